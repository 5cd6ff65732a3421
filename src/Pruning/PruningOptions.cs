using Pruning.Criteria;
using Pruning.Grouping;
using Pruning.Structure;
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

    /// <summary>
    /// The channel structure of a Sequential model (<see cref="SequentialChannels.Analyze"/>). When set, a row of a
    /// pruned weight that is pruned entirely is a dead channel: the producer's bias and the following BatchNorm's scale
    /// and shift are zeroed with it, so the channel outputs exactly zero and <see cref="SequentialChannels.Shrink"/>
    /// can remove it. Use it with <see cref="PruningGranularity.OutputChannels"/>.
    /// </summary>
    /// <value>The default is none.</value>
    public SequentialChannels? Channels { get; init; }

    /// <summary>Whether each tensor reaches the target on its own or the targets share one ranking.</summary>
    /// <value>The default is <see cref="PruningScope.LayerWise"/>.</value>
    public PruningScope Scope { get; init; } = PruningScope.LayerWise;

    /// <summary>
    /// Per-parameter schedules that replace <see cref="Schedule"/> for the named parameters (e.g. keep the classifier
    /// at 50 % while the rest goes to 90 %). Keys are full parameter names. Only with <see cref="PruningScope.LayerWise"/>.
    /// </summary>
    /// <value>The default is none.</value>
    public IReadOnlyDictionary<string, PruningSchedule> ScheduleOverrides { get; init; } = new Dictionary<string, PruningSchedule>();

    /// <summary>
    /// Per-parameter final sparsities (as Distiller and SparseML recipes allow): the parameter follows
    /// <see cref="Schedule"/> to its own target. Keys are full parameter names. Only with
    /// <see cref="PruningScope.LayerWise"/>.
    /// </summary>
    /// <value>The default is none.</value>
    public IReadOnlyDictionary<string, double> SparsityOverrides { get; init; } = new Dictionary<string, double>();

    /// <summary>
    /// Per-parameter bounds on sparsity. Layer-wise, a parameter's target is clamped into its range. Under
    /// <see cref="PruningScope.Global"/>, the ranking is constrained: a parameter never ends outside its range and the
    /// model-wide count stays exact while the bounds allow it.
    /// </summary>
    /// <value>The default is none.</value>
    public IReadOnlyDictionary<string, SparsityRange> SparsityBounds { get; init; } = new Dictionary<string, SparsityRange>();
}

/// <summary>Bounds on one parameter's sparsity.</summary>
public readonly record struct SparsityRange
{
    /// <summary>Creates the range.</summary>
    /// <param name="min">Lowest sparsity, in [0, 1).</param>
    /// <param name="max">Highest sparsity, in [min, 1).</param>
    public SparsityRange(double min, double max)
    {
        if (double.IsNaN(min) || min < 0 || min >= 1)
            throw new ArgumentOutOfRangeException(nameof(min), min, $"min must be in [0, 1); got {min}.");
        if (double.IsNaN(max) || max < min || max >= 1)
            throw new ArgumentOutOfRangeException(nameof(max), max, $"max must be in [min, 1); got {max} with min {min}.");
        (Min, Max) = (min, max);
    }

    /// <summary>Lowest sparsity.</summary>
    public double Min { get; }

    /// <summary>Highest sparsity.</summary>
    public double Max { get; }
}
