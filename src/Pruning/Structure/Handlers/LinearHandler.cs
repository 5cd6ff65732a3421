using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Structure;

/// <summary>Linear: over [N, features] it produces channels (its outputs); over a tensor of higher rank it keeps them.</summary>
internal sealed class LinearHandler : ModuleHandler
{
    public override ChannelUse Channels(nn.Module module, long[] inputShape, long[] outputShape) =>
        inputShape.Length == 2 ? ChannelUse.Produces("a Linear") : ChannelUse.Opaque($"a Linear over a tensor of rank {inputShape.Length}");

    public override IReadOnlyList<string> ChannelParameters(nn.Module module) => ((Linear)module).bias is null ? ["weight"] : ["weight", "bias"];

    public override void CheckShrinkable(nn.Module module)
    {
    }

    public override void Shrink(nn.Module module, long[]? rows, long[]? columns)
    {
        var linear = (Linear)module;
        linear.weight = ParameterSlices.Select(linear.weight!, rows, columns);
        if (linear.bias is { } bias) linear.bias = ParameterSlices.Select(bias, rows, null);
        linear.out_features = linear.weight.shape[0];
        linear.in_features = linear.weight.shape[1];
    }

    public override Action Save(nn.Module module)
    {
        var linear = (Linear)module;
        var (w, b, inFeatures, outFeatures) = (ParameterSlices.Copy(linear.weight), ParameterSlices.Copy(linear.bias), linear.in_features, linear.out_features);
        return () => (linear.weight, linear.bias, linear.in_features, linear.out_features) = (ParameterSlices.Restore(w)!, ParameterSlices.Restore(b), inFeatures, outFeatures);
    }

    public override long Macs(nn.Module module, long[] outputShape, long? inputs, long? outputs, bool weightsOnly)
    {
        var linear = (Linear)module;
        // Positions a Linear over rank > 2 applies at (its channels are kept whole then).
        long rows = weightsOnly ? 1 : outputShape.Aggregate(1L, (x, y) => x * y) / Math.Max(1, outputShape[0]) / Math.Max(1, outputShape[^1]);
        return (inputs ?? linear.in_features) * (outputs ?? linear.out_features) * rows;
    }
}
