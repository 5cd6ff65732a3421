using Pruning.Criteria;
using Pruning.Grouping;
using Pruning.Interop;
using Pruning.Selection;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Masks;

/// <summary>One parameter's mask, chosen by the selection engine from a criterion's scores: what the analysis tools prune with.</summary>
internal static class ScoredMask
{
    /// <summary>
    /// Scores <paramref name="weight"/> with <paramref name="criterion"/> and returns a new mask that prunes it to
    /// <paramref name="sparsity"/> at <paramref name="granularity"/>, ties going first to what <paramref name="previousKeep"/>
    /// already prunes. <paramref name="when"/> says where, for messages ("in NetAdapt").
    /// </summary>
    public static ParameterMask Select(IPruningCriterion criterion, string name, Tensor weight, double sparsity, PruningGranularity granularity,
        ReadOnlyMemory<bool> previousKeep, string when) => Select(criterion, name, weight, [], sparsity, granularity, previousKeep, when);

    /// <summary>
    /// <see cref="Select(IPruningCriterion, string, Tensor, double, PruningGranularity, ReadOnlyMemory{bool}, string)"/>
    /// for the first weight of a dependency group: its rows are scored together with <paramref name="scoredWith"/>'s
    /// (group-reduced importance) when there are any.
    /// </summary>
    public static ParameterMask Select(IPruningCriterion criterion, string name, Tensor weight, IReadOnlyList<(string Name, Tensor Weight)> scoredWith,
        double sparsity, PruningGranularity granularity, ReadOnlyMemory<bool> previousKeep, string when)
    {
        using var scope = torch.NewDisposeScope();
        Tensor scores = CriterionScores.Compute(criterion, name, weight, scoredWith, granularity.Norm, when);
        var selected = MaskSelector.Select([new SelectionLayer(name, TensorMemory.Of(scores), weight.shape) { Sparsity = sparsity, PreviousKeep = previousKeep }], granularity);
        var mask = new ParameterMask(name, weight.shape);
        mask.Replace(selected[0].Keep);
        return mask;
    }
}
