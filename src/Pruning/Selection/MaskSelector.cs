using System.Buffers;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Pruning.Grouping;

namespace Pruning.Selection;

/// <summary>
/// The one place where masks are chosen: scores, shapes, targets, bounds and the current masks in, keep-flags out.
/// The pruner, the sensitivity scan and both NetAdapts select through it, for every granularity and scope.
/// </summary>
/// <remarks>
/// <para>
/// Counts are exact: a tensor with G groups at target s prunes round(s·G) groups (halves to even), at most G − 1, so
/// one group always survives; under <see cref="PruningScope.Global"/> the model-wide count is round(s·ΣG) and one
/// ranking decides where it falls, within each tensor's <see cref="SelectionLayer.Bounds"/> while they allow it.
/// A granularity with a <see cref="PruningGranularity.RunLength"/> (N:M) prunes round(s·r) of every run of r groups,
/// capped by its <see cref="PruningGranularity.MaxSparsity"/>.
/// </para>
/// <para>
/// Ties follow one rule everywhere: among equal scores, what is already pruned is pruned first, then the lower
/// index (and the earlier tensor), so a selection never revives a pruned weight or group in favour of a live one
/// with the same score. The result does not depend on the thread count.
/// </para>
/// </remarks>
public static class MaskSelector
{
    /// <summary>Chooses the keep-flags of every layer.</summary>
    /// <param name="layers">The tensors, each with its scores, shape, target, bounds and current mask.</param>
    /// <param name="granularity">What is pruned together.</param>
    /// <param name="scope">Each tensor to its own target, or one ranking across all of them.</param>
    /// <returns>One selection per layer, in order.</returns>
    /// <exception cref="ArgumentException">A layer's scores, shape, mask or target do not fit, or the granularity
    /// cannot share a global ranking; the message names the layer.</exception>
    public static IReadOnlyList<MaskSelection> Select(IReadOnlyList<SelectionLayer> layers, PruningGranularity granularity, PruningScope scope = PruningScope.LayerWise)
    {
        ArgumentNullException.ThrowIfNull(layers);
        var keep = new bool[layers.Count][];
        for (int j = 0; j < layers.Count; j++)
            keep[j] = new bool[layers[j]?.Shape is { } shape ? shape.Aggregate(1L, (a, b) => a * b) : 0];
        double[] targets = SelectInto(layers, granularity, scope, keep);
        return layers.Select((l, j) => new MaskSelection(l.Name, keep[j], targets[j], keep[j].LongLength - CountTrue(keep[j]))).ToArray();
    }

    /// <summary>round(sparsity · n), halves to even: the count that an exact target means.</summary>
    public static long PrunedCount(double sparsity, long n) => (long)Math.Round(sparsity * n, MidpointRounding.ToEven);

    /// <summary>
    /// <see cref="Select"/> into the caller's arrays (one per layer, as long as its scores); returns the target each
    /// layer was selected at.
    /// </summary>
    internal static double[] SelectInto(IReadOnlyList<SelectionLayer> layers, PruningGranularity granularity, PruningScope scope, IReadOnlyList<bool[]> keep)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(granularity);
        if (!Enum.IsDefined(scope)) throw new ArgumentOutOfRangeException(nameof(scope), scope, "Unknown scope.");
        if (layers.Count == 0) throw new ArgumentException("Give at least one layer to select from.", nameof(layers));
        if (scope == PruningScope.Global)
        {
            if (granularity.RunLength > 0)
                throw new ArgumentException($"{granularity} gives every run of {granularity.RunLength} groups its own budget, so it cannot share a global ranking; use PruningScope.LayerWise.", nameof(scope));
            if (layers.Any(l => l?.Sparsity != layers[0]?.Sparsity))
                throw new ArgumentException($"Under a global scope every layer carries the one model-wide target; got {string.Join(", ", layers.Select(l => $"'{l?.Name}' {l?.Sparsity}"))}.", nameof(layers));
        }
        for (int j = 0; j < layers.Count; j++) Check(layers[j], j, granularity, keep[j]);

        var units = new Units[layers.Count];
        try
        {
            bool elementwise = granularity is ElementGranularity;
            for (int j = 0; j < layers.Count; j++)
                units[j] = elementwise ? Units.Elements(layers[j], keep[j]) : Units.Groups(layers[j], granularity);

            var targets = new double[layers.Count];
            if (scope == PruningScope.Global)
            {
                Array.Fill(targets, layers[0].Sparsity);
                SelectGlobal(layers, units, granularity, layers[0].Sparsity);
            }
            else
            {
                for (int j = 0; j < layers.Count; j++)
                {
                    targets[j] = layers[j].Bounds.Clamp(layers[j].Sparsity);
                    if (granularity.RunLength > 0) SelectRuns(units[j], granularity, targets[j]);
                    else
                    {
                        Units u = units[j];
                        RadixSelector.Select(_ => u.Scores.Span, Count(granularity, targets[j], u.Count), [u.Keep], [u.PreviousKeep]);
                    }
                }
            }

            if (!elementwise)
                for (int j = 0; j < layers.Count; j++)
                {
                    bool[] groupKeep = units[j].Keep, elementKeep = keep[j];
                    int[] groupOf = units[j].GroupOf!;
                    for (int i = 0; i < elementKeep.Length; i++) elementKeep[i] = groupKeep[groupOf[i]];
                }
            return targets;
        }
        finally
        {
            foreach (Units u in units)
                if (u.GroupOf is not null) ArrayPool<int>.Shared.Return(u.GroupOf);
        }
    }

    private static void Check(SelectionLayer? layer, int index, PruningGranularity granularity, bool[] keep)
    {
        if (layer is null) throw new ArgumentException($"Layer {index} is null.", "layers");
        if (string.IsNullOrEmpty(layer.Name)) throw new ArgumentException($"Layer {index} has no name.", "layers");
        if (layer.Shape is null || layer.Shape.Any(d => d < 0))
            throw new ArgumentException($"'{layer.Name}' has no valid shape.", "layers");
        long count = layer.Shape.Aggregate(1L, (a, b) => a * b);
        bool grouped = !layer.GroupScores.IsEmpty;
        if (count == 0 || (grouped ? !layer.Scores.IsEmpty && layer.Scores.Length != count : count != layer.Scores.Length))
            throw new ArgumentException($"'{layer.Name}' has shape [{string.Join(", ", layer.Shape)}] ({count} elements) but {layer.Scores.Length} scores; give one score per element, at least one.", "layers");
        if (grouped && layer.GroupScores.Length != granularity.GroupCount(layer.Shape))
            throw new ArgumentException($"'{layer.Name}' has {layer.GroupScores.Length} group scores; {granularity} gives it {granularity.GroupCount(layer.Shape)} groups.", "layers");
        if (grouped && !AllFinite(layer.GroupScores.Span))
            throw new ArgumentException($"The group scores of '{layer.Name}' hold NaN or infinite values.", "layers");
        if (!layer.PreviousKeep.IsEmpty && layer.PreviousKeep.Length != count)
            throw new ArgumentException($"The current mask of '{layer.Name}' has {layer.PreviousKeep.Length} flags, the tensor {count} elements.", "layers");
        if (double.IsNaN(layer.Sparsity) || layer.Sparsity < 0 || layer.Sparsity >= 1)
            throw new ArgumentException($"The target of '{layer.Name}' is {layer.Sparsity}; it must be in [0, 1).", "layers");
        if (!AllFinite(layer.Scores.Span))
            throw new ArgumentException($"The scores of '{layer.Name}' hold NaN or infinite values.", "layers");
        if (keep.Length != count)
            throw new ArgumentException($"The output for '{layer.Name}' has {keep.Length} flags, the tensor {count} elements.", nameof(keep));
        try
        {
            granularity.Validate(layer.Name, layer.Shape);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException(e.Bare(), "layers", e);
        }
    }

    /// <summary>
    /// One ranking across the tensors, kept inside each tensor's bounds: tensors the ranking would push past a bound
    /// are fixed at that bound (all above-max ones first, then all below-min ones) and the rest re-ranked, until no
    /// bound is violated. The total stays exactly k whenever the bounds allow it.
    /// </summary>
    private static void SelectGlobal(IReadOnlyList<SelectionLayer> layers, Units[] units, PruningGranularity granularity, double sparsity)
    {
        long[] low = units.Select((u, j) => Count(granularity, layers[j].Bounds.Min, u.Count)).ToArray();
        long[] high = units.Select((u, j) => Count(granularity, layers[j].Bounds.Max, u.Count)).ToArray();
        long k = Math.Clamp(PrunedCount(sparsity, units.Sum(u => u.Count)), low.Sum(), high.Sum());
        var free = Enumerable.Range(0, units.Length).ToList();
        while (free.Count > 0)
        {
            long remaining = Math.Clamp(k, 0, free.Sum(j => units[j].Count - 1));
            RadixSelector.Select(f => units[free[f]].Scores.Span, remaining, free.Select(j => units[j].Keep).ToList(), free.Select(j => units[j].PreviousKeep).ToList());
            var counts = free.ToDictionary(j => j, j => units[j].Count - CountTrue(units[j].Keep));
            var over = free.Where(j => counts[j] > high[j]).ToList();
            var fix = over.Count > 0 ? over : free.Where(j => counts[j] < low[j]).ToList();
            if (fix.Count == 0)
                return;
            foreach (int j in fix)
            {
                long bound = over.Count > 0 ? high[j] : low[j];
                Units u = units[j];
                RadixSelector.Select(_ => u.Scores.Span, bound, [u.Keep], [u.PreviousKeep]);
                k -= bound;
                free.Remove(j);
            }
        }
    }

    /// <summary>How many of <paramref name="count"/> groups a target prunes: round(s·count), leaving one, within the granularity's cap.</summary>
    private static long Count(PruningGranularity granularity, double sparsity, long count) =>
        Math.Min(Math.Min(PrunedCount(sparsity, count), count - 1), PrunedCount(granularity.MaxSparsity, count));

    /// <summary>Every run of r consecutive groups prunes its own round(s·r), capped by the granularity and so that one survives.</summary>
    private static void SelectRuns(Units units, PruningGranularity granularity, double sparsity)
    {
        int run = granularity.RunLength;
        if (units.Count % run != 0)
            throw new ArgumentException($"{granularity} budgets runs of {run} groups, but the tensor has {units.Count} groups.", "layers");
        int prune = (int)Count(granularity, sparsity, run);
        ReadOnlySpan<float> scores = units.Scores.Span;
        ReadOnlySpan<bool> before = units.PreviousKeep.Span;
        for (int start = 0; start < units.Count; start += run)
            SelectRun(scores.Slice(start, run), before.IsEmpty ? default : before.Slice(start, run), prune, units.Keep.AsSpan(start, run));
    }

    /// <summary>
    /// How many groups of a run of <paramref name="run"/> a target prunes under <paramref name="granularity"/>: what
    /// <see cref="Select"/> prunes in each run. For callers that choose run by run (the OBS solver).
    /// </summary>
    internal static int RunCount(PruningGranularity granularity, double sparsity, int run) => (int)Count(granularity, sparsity, run);

    /// <summary>
    /// Prunes exactly <paramref name="prune"/> of one short run (N:M), by score, then already pruned, then index; the
    /// rule <see cref="Select"/> follows in every run.
    /// </summary>
    internal static void SelectRun(ReadOnlySpan<float> scores, ReadOnlySpan<bool> previousKeep, int prune, Span<bool> keep)
    {
        int run = scores.Length;
        Span<int> order = run <= 64 ? stackalloc int[run] : new int[run];
        for (int j = 0; j < run; j++) order[j] = j;
        // Insertion sort by (score, already pruned first, index): runs are short.
        for (int j = 1; j < run; j++)
            for (int t = j; t > 0 && Before(order[t], order[t - 1], scores, previousKeep); t--)
                (order[t], order[t - 1]) = (order[t - 1], order[t]);
        for (int j = 0; j < run; j++) keep[order[j]] = j >= prune;
    }

    /// <summary>
    /// Prunes exactly <paramref name="prune"/> of the layer's groups (all of them if asked), ignoring its target and
    /// bounds: for callers that split one tensor's exact count across parts of it (the OBS solver's column windows,
    /// Wanda's rows). The granularity must not budget runs.
    /// </summary>
    internal static void SelectExactly(SelectionLayer layer, PruningGranularity granularity, long prune, bool[] keep)
    {
        ArgumentNullException.ThrowIfNull(granularity);
        if (granularity.RunLength > 0) throw new ArgumentException($"{granularity} budgets runs; select it run by run.", nameof(granularity));
        Check(layer with { Sparsity = 0 }, 0, granularity, keep);
        Units units = granularity is ElementGranularity ? Units.Elements(layer, keep) : Units.Groups(layer, granularity);
        try
        {
            if (prune >= units.Count) Array.Fill(units.Keep, false);
            else RadixSelector.Select(_ => units.Scores.Span, Math.Max(prune, 0), [units.Keep], [units.PreviousKeep]);
            if (units.GroupOf is int[] groupOf)
                for (int i = 0; i < keep.Length; i++) keep[i] = units.Keep[groupOf[i]];
        }
        finally
        {
            if (units.GroupOf is not null) ArrayPool<int>.Shared.Return(units.GroupOf);
        }
    }

    /// <summary>How many of a tensor's <paramref name="groups"/> a target prunes: what <see cref="Select"/> prunes layer-wise.</summary>
    internal static long TargetCount(PruningGranularity granularity, double sparsity, long groups) => Count(granularity, sparsity, groups);

    /// <summary>Whether unit a is pruned before unit b: smaller score, then already pruned, then lower index.</summary>
    private static bool Before(int a, int b, ReadOnlySpan<float> scores, ReadOnlySpan<bool> previousKeep)
    {
        float sa = scores[a] + 0f, sb = scores[b] + 0f; // −0 and +0 are equal
        if (sa != sb) return sa < sb;
        if (!previousKeep.IsEmpty && previousKeep[a] != previousKeep[b]) return !previousKeep[a];
        return a < b;
    }

    private static long CountTrue(bool[] flags)
    {
        long count = 0;
        ReadOnlySpan<ulong> words = MemoryMarshal.Cast<bool, ulong>(flags.AsSpan());
        foreach (ulong w in words) count += System.Numerics.BitOperations.PopCount(w);
        for (int i = words.Length * 8; i < flags.Length; i++) count += flags[i] ? 1 : 0;
        return count;
    }

    private static bool AllFinite(ReadOnlySpan<float> values)
    {
        ReadOnlySpan<uint> bits = MemoryMarshal.Cast<float, uint>(values);
        const uint exponent = 0x7F80_0000;
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var mask = Vector256.Create(exponent);
            var any = Vector256<uint>.Zero;
            for (; i <= bits.Length - Vector256<uint>.Count; i += Vector256<uint>.Count)
                any |= Vector256.Equals(Vector256.Create(bits.Slice(i, Vector256<uint>.Count)) & mask, mask);
            if (any != Vector256<uint>.Zero) return false;
        }
        for (; i < bits.Length; i++)
            if ((bits[i] & exponent) == exponent) return false;
        return true;
    }

    /// <summary>
    /// What one layer is selected over: its elements, or its groups' scores and flags. Under a group granularity
    /// <c>GroupOf</c> holds each element's group (rented; the caller returns it).
    /// </summary>
    private readonly record struct Units(ReadOnlyMemory<float> Scores, ReadOnlyMemory<bool> PreviousKeep, bool[] Keep, int[]? GroupOf)
    {
        public long Count => Keep.LongLength;

        public static Units Elements(SelectionLayer layer, bool[] keep) =>
            new(layer.GroupScores.IsEmpty ? layer.Scores : layer.GroupScores, layer.PreviousKeep, keep, null);

        /// <summary>Group scores by the granularity's norm (Σs² stands for L2: √ is monotonic); a group counts as
        /// already pruned when every element of it is.</summary>
        public static Units Groups(SelectionLayer layer, PruningGranularity granularity)
        {
            long groups = granularity.GroupCount(layer.Shape);
            int n = (int)layer.Count;
            if (groups < 1 || groups > n)
                throw new ArgumentException($"{granularity} gives '{layer.Name}' {groups} groups for {n} elements; a granularity must give between 1 and one group per element.", "layers");
            int[] groupOf = ArrayPool<int>.Shared.Rent(n);
            Span<int> map = groupOf.AsSpan(0, n);
            try
            {
                granularity.MapGroups(layer.Shape, map);
                return new Units(GroupScores(layer, granularity, map, groups, out bool[]? previous), previous, new bool[groups], groupOf);
            }
            catch
            {
                ArrayPool<int>.Shared.Return(groupOf);
                throw;
            }
        }

        private static float[] GroupScores(SelectionLayer layer, PruningGranularity granularity, ReadOnlySpan<int> map, long groups, out bool[]? previous)
        {
            int n = map.Length;
            bool given = !layer.GroupScores.IsEmpty;
            var scores = given ? layer.GroupScores.ToArray() : new float[groups];
            ReadOnlySpan<float> element = layer.Scores.Span;
            ReadOnlySpan<bool> before = layer.PreviousKeep.Span;
            previous = before.IsEmpty ? null : new bool[groups];
            for (int i = 0; i < n; i++)
            {
                int g = map[i];
                if ((uint)g >= (ulong)groups)
                    throw new ArgumentException($"{granularity} maps element {i} of '{layer.Name}' to group {g}, outside [0, {groups}).", "layers");
                if (previous is not null && before[i]) previous[g] = true;
                if (given) continue;
                float s = Math.Abs(element[i]);
                scores[g] = granularity.Norm switch
                {
                    LpNorm.L1 => scores[g] + s,
                    LpNorm.L2 => scores[g] + s * s,
                    _ => Math.Max(scores[g], s),
                };
            }
            if (!AllFinite(scores))
                throw new ArgumentException($"The group scores of '{layer.Name}' overflow float32; scale the criterion's scores down.", "layers");
            return scores;
        }
    }
}
