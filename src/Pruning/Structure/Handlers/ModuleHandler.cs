using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Structure;

/// <summary>
/// Everything the channel analysis needs to know about one module type: how it uses the channels it reads, which of its
/// parameters go with a pruned channel, how to remove channels from it in place (and put them back), and what it
/// costs. Conv2d, Linear, BatchNorm and the channel-wise activations and poolings have built-in handlers; register
/// one for a module type of your own with <see cref="ModuleHandlers.Register{TModule}"/>.
/// </summary>
/// <remarks>
/// Only <see cref="Channels"/> must be written. A <see cref="ChannelRole.PassThrough"/> or
/// <see cref="ChannelRole.Opaque"/> module needs nothing else; one that <see cref="ChannelRole.Produces"/> channels or
/// acts <see cref="ChannelRole.ChannelWise"/> lists its <see cref="ChannelParameters"/> and implements
/// <see cref="Shrink"/> and <see cref="Save"/> so that <see cref="ChannelGraph.ShrinkInPlace"/> can remove channels
/// from it, and <see cref="Macs"/> for the costs. The model is always run on the traced inputs after shrinking and put
/// back when its outputs change, so a handler that gets a module wrong is caught, not trusted.
/// </remarks>
public abstract class ModuleHandler
{
    /// <summary>How <paramref name="module"/> uses the channels of an input of <paramref name="inputShape"/> that gives
    /// <paramref name="outputShape"/> (both with the batch first; the channels are dimension 1).</summary>
    public abstract ChannelUse Channels(nn.Module module, long[] inputShape, long[] outputShape);

    /// <summary>
    /// The names (within the module) of its parameters whose first dimension is the channels it writes or acts on, in
    /// the order they are zeroed with a pruned channel: e.g. <c>weight</c> and <c>bias</c>.
    /// </summary>
    public virtual IReadOnlyList<string> ChannelParameters(nn.Module module) => [];

    /// <summary>
    /// Throws <see cref="NotSupportedException"/> unless <see cref="Shrink"/> can run on <paramref name="module"/>; it
    /// is asked of every module before any is changed, so that a model is never left half shrunk.
    /// </summary>
    public virtual void CheckShrinkable(nn.Module module) =>
        throw new NotSupportedException($"'{module.GetName()}' is a {module.GetType().Name}, whose handler cannot shrink it in place.");

    /// <summary>
    /// Keeps the output rows <paramref name="rows"/> and the input columns <paramref name="columns"/> (null = all; for a
    /// channel-wise module the rows are its channels) of the module's parameters and buffers, in place: the module
    /// object stays (a forward holds it in a field), its tensors and channel counts change.
    /// </summary>
    public virtual void Shrink(nn.Module module, long[]? rows, long[]? columns) => CheckShrinkable(module);

    /// <summary>Copies of what <see cref="Shrink"/> replaces in <paramref name="module"/>, and the action that puts them back.</summary>
    public virtual Action Save(nn.Module module) => () => { };

    /// <summary>
    /// Multiply-accumulates of one sample through <paramref name="module"/> when it reads <paramref name="inputs"/>
    /// features along dimension 1 (its input channels, times H·W behind a flatten) and writes
    /// <paramref name="outputs"/> channels (null: as many as it has; a channel-wise module writes as many as it reads),
    /// its output being of <paramref name="outputShape"/> (batch first); with <paramref name="weightsOnly"/>, the
    /// weights it keeps instead.
    /// </summary>
    public virtual long Macs(nn.Module module, long[] outputShape, long? inputs, long? outputs, bool weightsOnly) => 0;

    /// <summary>
    /// The sparse runtime's layers that compute <paramref name="module"/> in inference (<see cref="Export.SparseExport"/>
    /// asks for every module it has no lowering of its own for), or null when this handler does not lower it.
    /// </summary>
    public virtual IReadOnlyList<Sparse.Layers.SparseLayer>? ToRuntime(nn.Module module) => null;

    /// <summary>
    /// Adds the ONNX nodes that compute <paramref name="module"/> (named <paramref name="name"/> in the model) to
    /// <paramref name="graph"/> (<see cref="Export.OnnxExport"/> asks for every module it has no lowering of its own
    /// for); false when this handler does not lower it.
    /// </summary>
    public virtual bool ToOnnx(nn.Module module, string name, Export.OnnxLowering graph) => false;
}
