using Pruning.Criteria;
using Pruning.Grouping;
using Pruning.Scheduling;
using Pruning.Selection;

namespace Pruning;

/// <summary>One pruned parameter as the plan has it: its schedule (override applied), bounds and coupled 1-D parameters.</summary>
internal sealed record ResolvedParameter(string Name, long[] Shape, PruningSchedule Schedule, SparsityRange Bounds, IReadOnlyList<string> Coupled)
{
    public long Count { get; } = Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>The other weights of its dependency group, whose row importances are reduced with its own.</summary>
    public IReadOnlyList<string> ScoredWith { get; init; } = [];

    /// <summary>The elements of <see cref="ScoredWith"/> (an accumulating criterion keeps state for them too).</summary>
    public long ScoredCount { get; init; }
}

/// <summary>
/// Validated <see cref="PruningOptions"/> for one model: immutable, what a <see cref="GradualPruner"/> follows. The
/// policy is the options' own, or the criterion's scores selected by the engine.
/// </summary>
internal sealed record ResolvedPruning(IReadOnlyList<ResolvedParameter> Parameters, PruningScope Scope, MaskPolicy Policy, PruningGranularity Granularity);
