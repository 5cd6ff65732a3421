namespace Pruning.Selection;

/// <summary>One tensor's part in a selection: its scores, shape, target, bounds and current mask.</summary>
/// <param name="Name">The tensor's name, for messages (e.g. <c>fc1.weight</c>).</param>
/// <param name="Scores">One finite score per element, row-major; higher means more important. Empty when
/// <see cref="GroupScores"/> holds the groups' scores instead.</param>
/// <param name="Shape">The tensor's shape; the scores hold its product.</param>
public sealed record SelectionLayer(string Name, ReadOnlyMemory<float> Scores, long[] Shape)
{
    /// <summary>
    /// The target: the fraction of groups to prune, in [0, 1). Under <see cref="PruningScope.Global"/> every layer of
    /// one selection carries the same target, the model-wide one.
    /// </summary>
    public double Sparsity { get; init; }

    /// <summary>Bounds on this tensor's sparsity (layer-wise the target is clamped into them; globally they constrain the ranking).</summary>
    /// <value>The default is <see cref="SparsityRange.Unbounded"/>.</value>
    public SparsityRange Bounds { get; init; } = SparsityRange.Unbounded;

    /// <summary>The current keep-flags (true = kept), one per element, or empty before the first mask. Among equal
    /// scores, what is already pruned is pruned first, so ties never revive a pruned weight or group.</summary>
    public ReadOnlyMemory<bool> PreviousKeep { get; init; }

    /// <summary>
    /// One finite score per group of the granularity, used as they are instead of reducing <see cref="Scores"/> by the
    /// granularity's norm (a dependency group's importance, computed across several tensors). Empty by default.
    /// </summary>
    public ReadOnlyMemory<float> GroupScores { get; init; }

    /// <summary>The elements of <see cref="Shape"/>.</summary>
    internal long Count => Shape.Aggregate(1L, (a, b) => a * b);
}
