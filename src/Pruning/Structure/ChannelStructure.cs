using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Structure;

/// <summary>
/// Which parameters share a pruned weight's output channels: what <see cref="PruningOptions.Channels"/> needs to
/// zero a channel everywhere it lives, so that the channel outputs exactly zero and can be removed. Two analyses
/// provide it: <see cref="SequentialChannels"/> (a <c>Sequential</c> chain, read from its declaration) and
/// <see cref="ChannelGraph"/> (any model, read from one traced forward pass, with dependency groups across residual
/// adds and concatenations).
/// </summary>
public abstract class ChannelStructure
{
    private protected ChannelStructure()
    {
    }

    /// <summary>
    /// The parameters whose first dimension is the channels of <paramref name="weightName"/> and that are zeroed
    /// with its pruned rows: biases, BatchNorm scales and shifts, depthwise filters and, in a dependency group, the
    /// weights of the other layers that write the same channels.
    /// </summary>
    internal abstract IReadOnlyList<string> CoupledWith(string weightName);

    /// <summary>
    /// The other weights scored with <paramref name="weightName"/>: their row importances are reduced with its own
    /// into one score per channel (group-reduced importance). Empty when the weight alone decides.
    /// </summary>
    internal virtual IReadOnlyList<string> ScoredWith(string weightName) => [];

    /// <summary><see cref="ScoredWith(string)"/> with each weight looked up in <paramref name="model"/>.</summary>
    internal IReadOnlyList<(string Name, Tensor Weight)> ScoredWith(string weightName, nn.Module model) =>
        ScoredWith(weightName).Select(m => (m, (Tensor)model.get_parameter(m)!)).ToList();

    /// <summary>
    /// λ·Σ|γ| over the BatchNorm scales on prunable channels: the sparsity penalty of network slimming (Liu et al.
    /// 2017). Add it to the loss so that unimportant channels' scales shrink toward zero before they are pruned.
    /// </summary>
    /// <param name="strength">λ (≥ 0); the paper uses 1e-4 to 1e-5.</param>
    /// <returns>A scalar tensor on the BatchNorm scales' device, in the caller's dispose scope (zero when there is no BatchNorm).</returns>
    public abstract Tensor BatchNormL1Penalty(double strength);

    /// <summary>|γ| of the BatchNorm right after the layer whose weight is <paramref name="weightName"/>, one per output channel.</summary>
    internal abstract Tensor BatchNormScale(string weightName);

    /// <summary>λ·Σ|γ| over <paramref name="scales"/>.</summary>
    private protected static Tensor L1Penalty(nn.Module model, IEnumerable<string> scales, double strength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(strength);
        using var scope = TorchSharp.torch.NewDisposeScope();
        Tensor? total = null;
        foreach (string name in scales)
        {
            Tensor term = model.get_parameter(name)!.abs().sum();
            total = total is null ? term : total.add(term, Interop.Scalars.One);
        }
        if (total is null)
        {
            var any = model.parameters().First();
            return TorchSharp.torch.zeros([], any.dtype, any.device).MoveToOuterDisposeScope();
        }
        using var lambda = strength.ToScalar();
        return total.mul(lambda).MoveToOuterDisposeScope();
    }
}
