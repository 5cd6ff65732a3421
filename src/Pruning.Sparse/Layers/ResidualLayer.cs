using System.Runtime.CompilerServices;
using System.Numerics;

namespace Pruning.Sparse.Layers;

/// <summary>
/// A residual block: y = main(x) + shortcut(x), where both branches are chains of layers and an empty shortcut is the
/// identity (ResNet's basic block without its final activation, which follows as its own layer). The branches run on
/// buffers carved from the model's scratch, so the block allocates nothing per call.
/// </summary>
public sealed class ResidualLayer : SparseLayer
{
    /// <summary>How deeply residual blocks and concatenations may nest (a file could otherwise recurse without bound).</summary>
    public const int MaxDepth = 8;

    /// <summary>Creates the block; <paramref name="main"/> must not be empty (that would add x to itself).</summary>
    public ResidualLayer(IReadOnlyList<SparseLayer> main, IReadOnlyList<SparseLayer>? shortcut = null)
    {
        ArgumentNullException.ThrowIfNull(main);
        if (main.Count == 0) throw new ArgumentException("The main branch needs at least one layer.", nameof(main));
        if (main.Any(l => l is null) || shortcut?.Any(l => l is null) == true) throw new ArgumentException("A branch holds a null layer.", nameof(main));
        Main = [.. main];
        Shortcut = shortcut is null ? [] : [.. shortcut];
        int depth = LayerChains.Depth([this]);
        if (depth > MaxDepth) throw new ArgumentException($"Residual blocks and concatenations nest {depth} deep; at most {MaxDepth} are allowed.", nameof(main));
    }

    /// <summary>The main branch.</summary>
    public IReadOnlyList<SparseLayer> Main { get; }

    /// <summary>The shortcut branch; empty for the identity.</summary>
    public IReadOnlyList<SparseLayer> Shortcut { get; }

    /// <inheritdoc />
    public override string Describe() =>
        $"Residual [{string.Join(", ", Main.Select(l => l.Describe()))}] + {(Shortcut.Count == 0 ? "identity" : $"[{string.Join(", ", Shortcut.Select(l => l.Describe()))}]")}";

    /// <inheritdoc />
    public override long StoredParameters => Main.Concat(Shortcut).Sum(l => l.StoredParameters);

    /// <inheritdoc />
    public override long StoredBytes => Main.Concat(Shortcut).Sum(l => l.StoredBytes);

    /// <inheritdoc />
    public override FeatureShape OutputShape(FeatureShape input) => PlanFor(input).Main[^1];

    /// <summary>Both branches' shapes for one input shape, and the widest of them (one sample).</summary>
    private sealed record Plan(FeatureShape Input, FeatureShape[] Main, FeatureShape[] Shortcut, int Widest);

    /// <summary>The plan for the last input shape asked for: one immutable object, published whole.</summary>
    private Plan? _plan;

    /// <summary>The branches' shapes for <paramref name="input"/>, computed once per input shape so that a run allocates nothing.</summary>
    private Plan PlanFor(FeatureShape input)
    {
        if (Volatile.Read(ref _plan) is { } cached && cached.Input == input) return cached;
        FeatureShape[] main = LayerChains.Shapes(Main, input), shortcut = LayerChains.Shapes(Shortcut, input);
        if (main[^1] != shortcut[^1])
            throw new ArgumentException($"The residual block's main branch gives {main[^1]} but its shortcut gives {shortcut[^1]}; they must match to be added.", nameof(input));
        var plan = new Plan(input, main, shortcut, main.Concat(shortcut).Max(s => s.Size));
        Volatile.Write(ref _plan, plan);
        return plan;
    }

    /// <summary>Two ping-pong buffers and one for the shortcut's result, each as large as the widest activation, then the layers' own scratch.</summary>
    internal override long ScratchSize(FeatureShape input, int batch)
    {
        Plan plan = PlanFor(input);
        long scratch = Math.Max(LayerChains.LayerScratch(Main, plan.Main, batch), LayerChains.LayerScratch(Shortcut, plan.Shortcut, batch));
        return checked(3L * plan.Widest * batch + scratch);
    }

    internal override void Forward(ReadOnlySpan<float> input, FeatureShape shape, Span<float> output, int batch, Span<float> scratch, int threads)
    {
        Plan plan = PlanFor(shape);
        int activations = plan.Widest * batch, size = plan.Main[^1].Size * batch;
        Span<float> a = scratch[..activations], b = scratch.Slice(activations, activations), s = scratch.Slice(2 * activations, activations);
        Span<float> layerScratch = scratch[(3 * activations)..];
        ReadOnlySpan<float> shortcut = input[..size];
        if (Shortcut.Count > 0)
        {
            LayerChains.Run(Shortcut, plan.Shortcut, input, s, a, b, layerScratch, batch, threads);
            shortcut = s[..size];
        }
        LayerChains.Run(Main, plan.Main, input, output, a, b, layerScratch, batch, threads);
        Add(output[..size], shortcut);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Add(Span<float> y, ReadOnlySpan<float> x)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
            for (; i + Vector<float>.Count <= y.Length; i += Vector<float>.Count)
                (new Vector<float>(y[i..]) + new Vector<float>(x[i..])).CopyTo(y[i..]);
        for (; i < y.Length; i++) y[i] += x[i];
    }
}
