using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Structure;

/// <summary>
/// A residual block as a module: y = main(x) + shortcut(x), the shortcut being the identity when none is given, for
/// writing a ResNet as a <c>Sequential</c> (followed by its activation, as in ResNet's basic block). It is a plain
/// module: the trace sees its add like any other (<see cref="ChannelGraph"/> groups the channels on either side, the
/// exporters make it a <see cref="Pruning.Sparse.Layers.ResidualLayer"/> or an ONNX Add).
/// </summary>
public sealed class Residual : nn.Module<Tensor, Tensor>
{
    private readonly Sequential main;
    private readonly Sequential? shortcut;

    /// <summary>Creates the block. Parameters are named <c>main.…</c> and <c>shortcut.…</c> under the block's own name.</summary>
    public Residual(Sequential main, Sequential? shortcut = null) : base(nameof(Residual))
    {
        ArgumentNullException.ThrowIfNull(main);
        if (!main.children().Any()) throw new ArgumentException("The main branch needs at least one module.", nameof(main));
        this.main = main;
        this.shortcut = shortcut;
        RegisterComponents();
    }

    /// <summary>The main branch.</summary>
    public Sequential Main => main;

    /// <summary>The shortcut branch, or null for the identity.</summary>
    public Sequential? Shortcut => shortcut;

    /// <summary>The main branch of <paramref name="input"/> plus its shortcut (the input itself without one).</summary>
    /// <param name="input">The block's input.</param>
    /// <returns>main(input) + shortcut(input).</returns>
    public override Tensor forward(Tensor input)
    {
        Tensor y = main.call(input);
        if (shortcut is null) return y.add(input);
        using Tensor s = shortcut.call(input);
        return y.add(s);
    }
}
