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
}
