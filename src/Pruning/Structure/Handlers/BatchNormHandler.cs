using Pruning.Interop;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Structure;

/// <summary>BatchNorm1d/2d: one scale, shift and running statistic per channel of its input; without scale and shift it cannot zero a channel.</summary>
internal sealed class BatchNormHandler : ModuleHandler
{
    public override ChannelUse Channels(nn.Module module, long[] inputShape, long[] outputShape) =>
        ((BatchNorm)module).affine ? ChannelUse.ChannelWise("a BatchNorm") : ChannelUse.Opaque("a BatchNorm without scale and shift, which cannot zero a channel");

    public override IReadOnlyList<string> ChannelParameters(nn.Module module) => ((BatchNorm)module).affine ? ["weight", "bias"] : [];

    public override void CheckShrinkable(nn.Module module)
    {
        TorchInternals.RequireCounts(module, "num_features");
    }

    public override void Shrink(nn.Module module, long[]? rows, long[]? columns)
    {
        var bn = (BatchNorm)module;
        if (rows is null) return;
        using (var index = torch.tensor(rows, device: (bn.weight ?? bn.running_mean)!.device))
        {
            if (bn.weight is { } w) bn.weight = ParameterSlices.Select(w, rows, null);
            if (bn.bias is { } b) bn.bias = ParameterSlices.Select(b, rows, null);
            if (bn.running_mean is { } mean) bn.running_mean = mean.index_select(0, index).DetachFromDisposeScope();
            if (bn.running_var is { } variance) bn.running_var = variance.index_select(0, index).DetachFromDisposeScope();
        }
        TorchInternals.SetCount(bn, "num_features", rows.Length);
    }

    public override Action Save(nn.Module module)
    {
        var bn = (BatchNorm)module;
        var (gamma, beta, mean, variance, features) = (ParameterSlices.Copy(bn.weight), ParameterSlices.Copy(bn.bias),
            ParameterSlices.Copy(bn.running_mean), ParameterSlices.Copy(bn.running_var), bn.num_features);
        return () =>
        {
            if (gamma is not null) bn.weight = ParameterSlices.Restore(gamma)!;
            if (beta is not null) bn.bias = ParameterSlices.Restore(beta)!;
            if (mean is not null) bn.running_mean = mean.Value.Tensor;
            if (variance is not null) bn.running_var = variance.Value.Tensor;
            TorchInternals.SetCount(bn, "num_features", features);
        };
    }
}
