using Pruning.Structure;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Criteria;

/// <summary>
/// Network slimming (Liu et al. 2017): a channel is as important as the |γ| of the BatchNorm that scales it. Every
/// weight of a filter gets its channel's |γ|, so with <see cref="Grouping.PruningGranularity.OutputChannels"/> the
/// channels with the smallest scales go. Train with <see cref="ChannelGraph.BatchNormL1Penalty"/> added to the
/// loss so that the scales separate, and prune only layers followed by a BatchNorm. With a <see cref="ChannelGraph"/>
/// a dependency group is scored by the |γ| of the BatchNorms after each of its layers (a layer without one adds nothing).
/// </summary>
/// <param name="channels">The model's channel structure.</param>
public sealed class BatchNormScalingCriterion(ChannelGraph channels) : IPruningCriterion
{
    private readonly ChannelGraph _channels = channels ?? throw new ArgumentNullException(nameof(channels));

    /// <inheritdoc />
    public Tensor Score(string parameterName, Tensor weight)
    {
        Tensor gamma = _channels.BatchNormScale(parameterName);
        var shape = new long[weight.dim()];
        Array.Fill(shape, 1L);
        shape[0] = weight.shape[0];
        return gamma.reshape(shape).expand(weight.shape).to(weight.dtype).contiguous();
    }

    /// <inheritdoc />
    public override string ToString() => "BatchNormScaling";
}
