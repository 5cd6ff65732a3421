using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Criteria;

/// <summary>A criterion's scores for one parameter, checked and brought to where the selection engine reads them.</summary>
internal static class CriterionScores
{
    /// <summary>
    /// The scores as a contiguous CPU float32 tensor (in the caller's dispose scope), whose storage the selection
    /// engine reads in place. <paramref name="when"/> ("at step 300") goes into the messages.
    /// </summary>
    /// <exception cref="InvalidOperationException">The weight or the scores are not finite, or the scores have another shape.</exception>
    public static Tensor Compute(IPruningCriterion criterion, string name, Tensor weight, string when)
    {
        if (!IsFinite(weight))
            throw new InvalidOperationException(
                $"Parameter '{name}' holds NaN or infinite values {when}; its mask cannot be computed. Check the learning rate and the loss.");
        Tensor score = criterion.Score(name, weight.detach());
        if (!score.shape.SequenceEqual(weight.shape))
            throw new InvalidOperationException($"Criterion {criterion} returned shape [{string.Join(", ", score.shape)}] for '{name}' of shape [{string.Join(", ", weight.shape)}].");
        Tensor host = score.to(ScalarType.Float32).cpu().contiguous();
        if (!IsFinite(host))
            throw new InvalidOperationException($"Criterion {criterion} returned NaN or infinite scores for '{name}' {when}.");
        return host;
    }

    /// <summary>
    /// The scores of the first weight of a dependency group, per channel: its rows scored together with
    /// <paramref name="scoredWith"/>'s (<see cref="GroupImportance"/>).
    /// </summary>
    public static float[] Group(IPruningCriterion criterion, string name, Tensor weight, IReadOnlyList<(string Name, Tensor Weight)> scoredWith,
        Grouping.LpNorm norm, string when) =>
        GroupImportance.Reduce(Compute(criterion, name, weight, when), scoredWith.Select(m => Compute(criterion, m.Name, m.Weight, when)).ToList(), norm);

    /// <summary>max |x| propagates NaN and is far cheaper than isfinite().all() on the CPU.</summary>
    private static bool IsFinite(Tensor t)
    {
        if (t.numel() == 0) return true;
        using var abs = t.abs();
        using var max = abs.max();
        return double.IsFinite(max.to(ScalarType.Float64).item<double>());
    }

    /// <summary>"at step 300", for messages.</summary>
    public static string AtStep(long step) => string.Create(CultureInfo.InvariantCulture, $"at step {step}");
}
