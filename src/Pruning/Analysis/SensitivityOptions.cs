using Pruning.Criteria;
using Pruning.Grouping;
using Pruning.Targets;

namespace Pruning.Analysis;

/// <summary>What a sensitivity scan probes.</summary>
public sealed class SensitivityOptions
{
    /// <summary>The ratios each layer is pruned to, one at a time (default 0.1, 0.2, …, 0.9). Each in [0, 1).</summary>
    public IReadOnlyList<double> Ratios { get; init; } = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

    /// <summary>The layers to probe (default: every prunable weight).</summary>
    public PruningTargets Targets { get; init; } = PruningTargets.Default;

    /// <summary>How elements are scored; must not need gradients (magnitude by default).</summary>
    public IPruningCriterion Criterion { get; init; } = new MagnitudeCriterion();

    /// <summary>What is pruned together (elements by default; channels, blocks, N:M…).</summary>
    public PruningGranularity Granularity { get; init; } = PruningGranularity.Element;

    /// <summary>The metric's direction.</summary>
    public MetricDirection Direction { get; init; } = MetricDirection.HigherIsBetter;
}
