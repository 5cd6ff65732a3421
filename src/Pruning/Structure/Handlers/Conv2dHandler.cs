using Pruning.Interop;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Structure;

/// <summary>
/// Conv2d: with one group it produces channels; depthwise (groups = in = out) it acts on its input's channels; other
/// grouped convolutions keep theirs.
/// </summary>
internal sealed class Conv2dHandler : ModuleHandler
{
    public override ChannelUse Channels(nn.Module module, long[] inputShape, long[] outputShape)
    {
        var conv = (Conv2d)module;
        if (ChannelSpaces.IsDepthwise(conv)) return ChannelUse.ChannelWise("a depthwise convolution");
        if (conv.groups == 1) return ChannelUse.Produces("a convolution");
        return ChannelUse.Opaque($"a grouped convolution (groups = {conv.groups}) that is not depthwise");
    }

    public override IReadOnlyList<string> ChannelParameters(nn.Module module) => ((Conv2d)module).bias is null ? ["weight"] : ["weight", "bias"];

    public override void CheckShrinkable(nn.Module module)
    {
        TorchInternals.RequireCounts(module, "out_channels", "in_channels");
    }

    public override void Shrink(nn.Module module, long[]? rows, long[]? columns)
    {
        var conv = (Conv2d)module;
        bool depthwise = ChannelSpaces.IsDepthwise(conv);
        if (depthwise) columns = null; // one input channel per filter: the rows are the channels
        conv.weight = ParameterSlices.Select(conv.weight!, rows, columns);
        if (conv.bias is { } bias) conv.bias = ParameterSlices.Select(bias, rows, null);
        long outputs = conv.weight.shape[0];
        long inputs = depthwise ? outputs : conv.weight.shape[1] * conv.groups;
        TorchInternals.SetCount(conv, "out_channels", outputs);
        TorchInternals.SetCount(conv, "in_channels", inputs);
        TorchInternals.SetInputChannels(conv, inputs);
        if (depthwise) conv.groups = outputs;
    }

    public override Action Save(nn.Module module)
    {
        var conv = (Conv2d)module;
        var (w, b, groups, input) = (ParameterSlices.Copy(conv.weight), ParameterSlices.Copy(conv.bias), conv.groups, TorchInternals.InputChannels(conv));
        long inputs = conv.in_channels, outputs = conv.out_channels;
        return () =>
        {
            (conv.weight, conv.bias, conv.groups) = (ParameterSlices.Restore(w)!, ParameterSlices.Restore(b), groups);
            TorchInternals.SetCount(conv, "in_channels", inputs);
            TorchInternals.SetCount(conv, "out_channels", outputs);
            if (input is long n) TorchInternals.SetInputChannels(conv, n);
        };
    }

    public override long Macs(nn.Module module, long[] outputShape, long? inputs, long? outputs, bool weightsOnly)
    {
        var conv = (Conv2d)module;
        long positions = (weightsOnly ? 1 : outputShape.Skip(2).Aggregate(1L, (x, y) => x * y)) * conv.kernel_size.Aggregate(1L, (x, y) => x * y);
        long reads = inputs ?? conv.in_channels;
        if (ChannelSpaces.IsDepthwise(conv)) return positions * reads;   // one filter per channel
        return positions * reads / conv.groups * (outputs ?? conv.out_channels);
    }
}
