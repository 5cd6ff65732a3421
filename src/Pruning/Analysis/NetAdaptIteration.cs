namespace Pruning.Analysis;

/// <summary>One NetAdapt iteration: the proposal kept and what it measured.</summary>
/// <param name="Iteration">1, 2, …</param>
/// <param name="Layer">The weight pruned further.</param>
/// <param name="Sparsity">Its sparsity after the iteration (for channel NetAdapt, the fraction of channels removed).</param>
/// <param name="Channels">For channel NetAdapt, the channels it keeps; null otherwise.</param>
/// <param name="Cost">The estimate for the whole model after the iteration (a latency or MACs, as the search counts).</param>
/// <param name="Metric">The kept proposal's metric after short-term fine-tuning.</param>
/// <param name="ProposalsTried">How many proposals were fine-tuned and evaluated.</param>
public sealed record NetAdaptIteration(int Iteration, string Layer, double Sparsity, long? Channels, Cost Cost, double Metric, int ProposalsTried);
