using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Structure;

/// <summary>Activations that map 0 to 0, poolings, Dropout and Identity: each channel alone, no parameters.</summary>
internal sealed class PassThroughHandler : ModuleHandler
{
    public override ChannelUse Channels(nn.Module module, long[] inputShape, long[] outputShape) =>
        inputShape.Length == outputShape.Length && inputShape.Length > 1 && inputShape[1] == outputShape[1]
            ? ChannelUse.PassThrough($"a {module.GetType().Name}")
            : ChannelUse.Opaque($"a {module.GetType().Name} that changes the channel count");
}
