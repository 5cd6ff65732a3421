using Pruning.Criteria;
using Pruning.Grouping;
using Pruning.Scheduling;
using Pruning.Selection;
using Pruning.Targets;

namespace Pruning;

/// <summary>What to prune, how much and when. Validated once, when a <see cref="GradualPruner"/> is created.</summary>
public sealed class PruningOptions
{
    /// <summary>When masks are recomputed and to which sparsity (e.g. <see cref="PolynomialDecaySchedule"/>).</summary>
    public required PruningSchedule Schedule { get; init; }

    /// <summary>Which parameters are pruned.</summary>
    /// <value>The default is <see cref="PruningTargets.Default"/>: every weight with two or more dimensions.</value>
    public PruningTargets Targets { get; init; } = PruningTargets.Default;

    /// <summary>How important each weight is.</summary>
    /// <value>The default is <see cref="MagnitudeCriterion"/>.</value>
    public IPruningCriterion Criterion { get; init; } = new MagnitudeCriterion();

    /// <summary>Which elements are pruned together: single weights, output channels, kernels, blocks or N:M runs.</summary>
    /// <value>The default is <see cref="PruningGranularity.Element"/> (unstructured).</value>
    public PruningGranularity Granularity { get; init; } = PruningGranularity.Element;

    /// <summary>Whether each tensor reaches the target on its own or the targets share one ranking.</summary>
    /// <value>The default is <see cref="PruningScope.LayerWise"/>.</value>
    public PruningScope Scope { get; init; } = PruningScope.LayerWise;

    /// <summary>
    /// Per-parameter schedules that replace <see cref="Schedule"/> for the named parameters (e.g. keep the classifier
    /// at 50 % while the rest goes to 90 %). Keys are full parameter names. Only with <see cref="PruningScope.LayerWise"/>.
    /// </summary>
    /// <value>The default is none.</value>
    public IReadOnlyDictionary<string, PruningSchedule> ScheduleOverrides { get; init; } = new Dictionary<string, PruningSchedule>();
}
