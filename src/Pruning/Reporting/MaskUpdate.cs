namespace Pruning.Reporting;

/// <summary>What one mask update did to one parameter.</summary>
/// <param name="Name">The parameter's name.</param>
/// <param name="TargetSparsity">The sparsity the schedule asked for (the model-wide target under global scope).</param>
/// <param name="Pruned">Pruned positions after the update.</param>
/// <param name="Total">Elements in the parameter.</param>
/// <param name="NewlyPruned">Positions pruned now that were not before.</param>
/// <param name="Revived">Positions pruned before that are not now (they restart from zero).</param>
public sealed record LayerMaskUpdate(string Name, double TargetSparsity, long Pruned, long Total, long NewlyPruned, long Revived)
{
    /// <summary>Pruned / Total.</summary>
    public double Sparsity => Total == 0 ? 0 : (double)Pruned / Total;
}

/// <summary>A mask update: the step it happened at and the churn per parameter.</summary>
/// <param name="Step">The pruner step of the update.</param>
/// <param name="Layers">One entry per parameter updated.</param>
public sealed record MaskUpdate(long Step, IReadOnlyList<LayerMaskUpdate> Layers)
{
    /// <summary>Positions newly pruned across all layers.</summary>
    public long NewlyPruned => Layers.Sum(l => l.NewlyPruned);

    /// <summary>Positions revived across all layers.</summary>
    public long Revived => Layers.Sum(l => l.Revived);

    /// <inheritdoc />
    public override string ToString() =>
        $"step {Step}: " + string.Join(", ", Layers.Select(l => $"{l.Name} {Percent.Format(l.Sparsity)} (+{l.NewlyPruned} −{l.Revived})"));
}
