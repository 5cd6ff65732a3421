using Pruning.Grouping;
using Pruning.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Criteria;

/// <summary>
/// One score per channel of a dependency group (Torch-Pruning's group importance with its defaults): each weight's
/// rows are reduced by the granularity's norm, each weight's row scores are divided by their mean (so a wide layer
/// and a narrow one weigh the same), and the weights' normalized scores are averaged.
/// </summary>
internal static class GroupImportance
{
    /// <summary>The group's score per channel (one per row of <paramref name="leader"/>), for <see cref="Selection.SelectionLayer.GroupScores"/>.</summary>
    /// <param name="leader">The element scores of the weight whose mask is selected (CPU, float32, contiguous).</param>
    /// <param name="members">The element scores of the other weights writing the same channels (same first dimension).</param>
    /// <param name="norm">How a row's element scores reduce to one.</param>
    public static float[] Reduce(Tensor leader, IReadOnlyList<Tensor> members, LpNorm norm)
    {
        long rows = leader.shape[0];
        using var scope = torch.NewDisposeScope();
        Tensor total = Normalized(leader, norm);
        foreach (Tensor member in members)
        {
            if (member.shape[0] != rows)
                throw new InvalidOperationException($"A dependency group mixes {rows} and {member.shape[0]} channels; trace the model again after changing it.");
            total = total.add(Normalized(member, norm), Scalars.One);
        }
        using var count = ((double)(members.Count + 1)).ToScalar();
        Tensor group = total.div(count);
        if (norm == LpNorm.L2) group = group.sqrt();
        return group.to(ScalarType.Float32).data<float>().ToArray();
    }

    /// <summary>Row norms divided by their mean (left as they are when the mean is zero).</summary>
    private static Tensor Normalized(Tensor scores, LpNorm norm)
    {
        Tensor abs = scores.abs().reshape(scores.shape[0], -1);
        Tensor rows = norm switch
        {
            LpNorm.L1 => abs.sum(1),
            LpNorm.L2 => abs.square().sum(1),
            _ => abs.amax(1),
        };
        double mean = rows.mean().item<float>();
        if (mean <= 0 || !double.IsFinite(mean)) return rows.to(ScalarType.Float64);
        using var divisor = mean.ToScalar();
        return rows.to(ScalarType.Float64).div(divisor);
    }
}
