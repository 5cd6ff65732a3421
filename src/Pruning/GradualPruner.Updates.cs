using System.Globalization;
using System.Runtime.InteropServices;
using Pruning.Grouping;
using Pruning.Masks;
using Pruning.Reporting;
using Pruning.Selection;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning;

/// <summary>Mask updates: scoring, selection (layer-wise, global, bounded, grouped) and the resulting churn.</summary>
public sealed partial class GradualPruner
{
    private MaskUpdate UpdateMasks(int[] due)
    {
        long step = CurrentStep;
        // Scores stay in their (CPU, float32, contiguous) tensors; the selector reads their storage in place.
        Tensor[] scores = due.Select(i => Scores(_masks[i].Name)).ToArray();
        ReadOnlySpan<float> Source(int j) => MemoryMarshal.Cast<byte, float>(scores[j].bytes);
        var pruned = due.Select(i => _masks[i].NextBuffer()).ToArray();
        byte[]?[] previous = due.Select(i => _masks[i].Current).ToArray();

        double[] targets = due.Select(i => _schedules[i].SparsityAt(step)).ToArray();
        if (_options.Scope == PruningScope.Global && _options.Granularity is GroupGranularity grouping)
        {
            float[][] groupScores = Enumerable.Range(0, due.Length).Select(j => grouping.GroupScores(Source(j), _masks[due[j]].Shape)).ToArray();
            byte[][] groupPruned = groupScores.Select(g => new byte[g.Length]).ToArray();
            SelectGlobal(due, g => groupScores[g], PrunedCount(targets[0], groupScores.Sum(g => (long)g.Length)), groupPruned);
            for (int j = 0; j < due.Length; j++)
                grouping.Expand(groupPruned[j], _masks[due[j]].Shape, pruned[j]);
        }
        else if (_options.Scope == PruningScope.Global)
        {
            SelectGlobal(due, Source, PrunedCount(targets[0], pruned.Sum(p => (long)p.Length)), pruned, previous);
        }
        else if (_options.Granularity is ElementGranularity)
        {
            for (int j = 0; j < due.Length; j++)
                targets[j] = Math.Clamp(targets[j], _bounds[due[j]].Min, _bounds[due[j]].Max);
            for (int j = 0; j < due.Length; j++)
            {
                int index = j;
                long max = SmallestSelector.MaxSelectable([pruned[j].Length]);
                SmallestSelector.Select(_ => Source(index), Math.Min(PrunedCount(targets[j], pruned[j].Length), max), [pruned[j]], [previous[j]]);
            }
        }
        else
        {
            for (int j = 0; j < due.Length; j++)
            {
                targets[j] = Math.Clamp(targets[j], _bounds[due[j]].Min, _bounds[due[j]].Max);
                _options.Granularity.Select(Source(j), _masks[due[j]].Shape, targets[j], pruned[j]);
            }
        }

        var layers = new List<LayerMaskUpdate>(due.Length);
        for (int j = 0; j < due.Length; j++)
        {
            ParameterMask mask = _masks[due[j]];
            var (newly, revived) = mask.Replace(pruned[j]);
            mask.Target = targets[j];
            mask.LastUpdateStep = step;
            layers.Add(new LayerMaskUpdate(mask.Name, targets[j], mask.PrunedCount, mask.Count, newly, revived));
        }
        return new MaskUpdate(step, layers);
    }

    /// <summary>
    /// One ranking across the tensors, kept inside each tensor's bounds: tensors the ranking would push past a bound
    /// are fixed at that bound (all above-max ones first, then all below-min ones) and the rest re-ranked, until no
    /// bound is violated. The total stays exactly k whenever the bounds allow it.
    /// </summary>
    private void SelectGlobal(int[] due, SmallestSelector.ScoreSource source, long k, byte[][] pruned, byte[]?[]? previous = null)
    {
        if (_options.SparsityBounds.Count == 0)
        {
            SmallestSelector.Select(source, Math.Min(k, SmallestSelector.MaxSelectable(pruned.Select(p => (long)p.Length))), pruned, previous);
            return;
        }
        long[] low = due.Select((i, j) => Math.Min(PrunedCount(_bounds[i].Min, pruned[j].Length), pruned[j].Length - 1L)).ToArray();
        long[] high = due.Select((i, j) => Math.Min(PrunedCount(_bounds[i].Max, pruned[j].Length), pruned[j].Length - 1L)).ToArray();
        k = Math.Clamp(k, low.Sum(), high.Sum());
        var free = Enumerable.Range(0, due.Length).ToList();
        while (free.Count > 0)
        {
            var subset = free.Select(j => pruned[j]).ToList();
            long remaining = Math.Clamp(k, 0, SmallestSelector.MaxSelectable(subset.Select(p => (long)p.Length)));
            SmallestSelector.Select(f => source(free[f]), remaining, subset, previous is null ? null : free.Select(j => previous[j]).ToList());
            var counts = free.ToDictionary(j => j, j => pruned[j].Sum(b => (long)b));
            var over = free.Where(j => counts[j] > high[j]).ToList();
            var fix = over.Count > 0 ? over : free.Where(j => counts[j] < low[j]).ToList();
            if (fix.Count == 0)
                return;
            foreach (int j in fix)
            {
                long bound = over.Count > 0 ? high[j] : low[j];
                SmallestSelector.Select(_ => source(j), bound, [pruned[j]], previous is null ? null : [previous[j]]);
                k -= bound;
                free.Remove(j);
            }
        }
    }

    /// <summary>round(sparsity · n), halves to even, the count that an exact target means.</summary>
    internal static long PrunedCount(double sparsity, long n) => (long)Math.Round(sparsity * n, MidpointRounding.ToEven);

    /// <summary>The criterion's scores as a CPU float32 contiguous tensor (in the caller's dispose scope).</summary>
    private Tensor Scores(string name)
    {
        Parameter weight = Weight(name);
        if (!IsFinite(weight))
            throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture,
                $"Parameter '{name}' holds NaN or infinite values at step {CurrentStep}; its mask cannot be computed. Check the learning rate and the loss."));
        Tensor score = _options.Criterion.Score(name, weight.detach());
        if (!score.shape.SequenceEqual(weight.shape))
            throw new InvalidOperationException($"Criterion {_options.Criterion} returned shape [{string.Join(", ", score.shape)}] for '{name}' of shape [{string.Join(", ", weight.shape)}].");
        Tensor host = score.to(ScalarType.Float32).cpu().contiguous();
        if (!IsFinite(host))
            throw new InvalidOperationException($"Criterion {_options.Criterion} returned NaN or infinite scores for '{name}' at step {CurrentStep}.");
        return host;
    }

    /// <summary>max |x| propagates NaN and is far cheaper than isfinite().all() on the CPU.</summary>
    private static bool IsFinite(Tensor t) => t.numel() == 0 || double.IsFinite(t.abs().max().to(ScalarType.Float64).item<double>());
}
