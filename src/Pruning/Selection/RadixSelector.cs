using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Pruning.Selection;

/// <summary>
/// Prunes exactly k elements with the smallest scores across one or more score arrays, in O(n): a radix select over
/// order-preserving 32-bit keys (a histogram of the high 16 bits; a marking pass that also histograms the low bits of
/// the threshold bucket; a pass over the chunks that hold that bucket), spread over the cores in fixed chunks and
/// allocating nothing per element.
/// </summary>
/// <remarks>
/// Order is (score, previously pruned first, array index, element index): among equal scores an element that is
/// already pruned goes first, then the earlier one, so the result is deterministic, independent of the thread count,
/// and ties never revive a pruned weight while pruning a live one. Each array's largest element (among equals, the
/// last one still kept, else the last) is protected, so at least one element of every array always survives. Scores must be finite.
/// </remarks>
internal static class RadixSelector
{
    private const int ChunkSize = 1 << 16;

    /// <summary>Gives the scores of array <c>index</c>; called many times per selection, from several threads.</summary>
    public delegate ReadOnlySpan<float> ScoreSource(int index);

    /// <summary>
    /// Sets <c>keep[a][i] = false</c> for exactly <paramref name="k"/> elements and true elsewhere.
    /// </summary>
    /// <param name="scores">The scores of each array.</param>
    /// <param name="k">How many to prune; at most Σ (length − 1), since every array keeps one element.</param>
    /// <param name="keep">The output flags, one array per score array.</param>
    /// <param name="previousKeep">The current keep-flags of each array (empty = no mask yet): among equal scores,
    /// already pruned elements are pruned first, so ties cause no churn.</param>
    public static void Select(ScoreSource scores, long k, IReadOnlyList<bool[]> keep, IReadOnlyList<ReadOnlyMemory<bool>>? previousKeep = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(k, keep.Sum(p => Math.Max(p.LongLength - 1, 0)));
        var chunks = new List<(int Array, int Start, int Length)>();
        for (int a = 0; a < keep.Count; a++)
        {
            if (keep[a].Length != scores(a).Length)
                throw new ArgumentException($"Output array {a} has {keep[a].Length} elements, its scores {scores(a).Length}.", nameof(keep));
            Array.Fill(keep[a], true);
            for (int start = 0; start < keep[a].Length; start += ChunkSize)
                chunks.Add((a, start, Math.Min(ChunkSize, keep[a].Length - start)));
        }
        if (k == 0)
            return;

        ReadOnlySpan<uint> Keys(int c) => MemoryMarshal.Cast<float, uint>(scores(chunks[c].Array).Slice(chunks[c].Start, chunks[c].Length));
        ReadOnlySpan<byte> Before(int c) => previousKeep is not null && !previousKeep[chunks[c].Array].IsEmpty
            ? MemoryMarshal.Cast<bool, byte>(previousKeep[chunks[c].Array].Span.Slice(chunks[c].Start, chunks[c].Length)) : default;
        Span<byte> Flags(int c) => MemoryMarshal.Cast<bool, byte>(keep[chunks[c].Array].AsSpan(chunks[c].Start, chunks[c].Length));
        var largest = new (uint Key, int Index)[keep.Count];
        Array.Fill(largest, (0u, -1));

        // Fixed chunks dealt round-robin to a few workers, one histogram each, so the result and the work per thread
        // do not depend on the thread pool, and small tensors do not pay for threads they cannot use.
        long total = keep.Sum(p => (long)p.Length);
        int workers = (int)Math.Clamp(total / (4L * ChunkSize), 1, Math.Min(Environment.ProcessorCount, chunks.Count));
        int[][] histograms = Enumerable.Range(0, workers).Select(_ => ArrayPool<int>.Shared.Rent(65536)).ToArray();
        try
        {
            // Pass 1: histogram of the high 16 bits, and each chunk's largest key (the last among equals).
            var chunkMax = new (uint Key, int Index)[chunks.Count];
            ForEachWorker(workers, w =>
            {
                int[] local = histograms[w];
                Array.Clear(local, 0, 65536);
                for (int c = w; c < chunks.Count; c += workers)
                {
                    var (best, bestIndex) = HistogramAndMax(Keys(c), local);
                    chunkMax[c] = (best, chunks[c].Start + bestIndex);
                }
            });
            int[] high = Sum(histograms);

            for (int c = 0; c < chunks.Count; c++)
                if (largest[chunks[c].Array].Index < 0 || chunkMax[c].Key >= largest[chunks[c].Array].Key)
                    largest[chunks[c].Array] = chunkMax[c];
            // The survivor is the largest element in the selection's order: among equal largest scores, one that is
            // still kept, so that keeping one never means reviving one.
            for (int a = 0; a < largest.Length; a++)
            {
                ReadOnlySpan<bool> before = previousKeep is null ? default : previousKeep[a].Span;
                if (largest[a].Index < 0 || before.IsEmpty || before[largest[a].Index]) continue;
                ReadOnlySpan<uint> bits = MemoryMarshal.Cast<float, uint>(scores(a));
                for (int i = bits.Length - 1; i >= 0; i--)
                    if (before[i] && Key(bits[i]) == largest[a].Key) { largest[a] = (largest[a].Key, i); break; }
            }
            foreach (var (key, _) in largest.Where(e => e.Index >= 0))
                high[key >> 16]--;
            uint bucket = Locate(high, ref k);

            // Pass 2: everything in a lower bucket is pruned, and the low 16 bits of the threshold bucket's elements
            // are counted. Nothing is allocated per element: the bucket can hold most of a tensor (all its zeros).
            var inBucket = new int[chunks.Count];
            ForEachWorker(workers, w =>
            {
                int[] local = histograms[w];
                Array.Clear(local, 0, 65536);
                for (int c = w; c < chunks.Count; c += workers)
                {
                    Span<byte> p = Flags(c);
                    int protectedIndex = largest[chunks[c].Array].Index - chunks[c].Start;
                    inBucket[c] = MarkBelowAndCount(Keys(c), p, bucket, local, protectedIndex);
                    if ((uint)protectedIndex < (uint)p.Length) p[protectedIndex] = 1;
                }
            });
            uint threshold = bucket << 16 | Locate(Sum(histograms), ref k);

            // Pass 3, over the chunks that hold threshold-bucket elements only: those below the threshold, and of the
            // elements equal to it, the already pruned ones (so ties never churn); then the tie count is made exact.
            long markedTies = 0, ties = k;
            for (int c = 0; c < chunks.Count; c++)
            {
                if (inBucket[c] == 0) continue;
                ReadOnlySpan<uint> s = Keys(c);
                Span<byte> p = Flags(c);
                ReadOnlySpan<byte> before = Before(c);
                int protectedIndex = largest[chunks[c].Array].Index - chunks[c].Start;
                for (int i = 0; i < s.Length; i++)
                {
                    uint key = Key(s[i]);
                    if (key >> 16 != bucket || i == protectedIndex) continue;
                    if (key < threshold)
                        p[i] = 0;
                    else if (key == threshold && (before.IsEmpty ? markedTies < ties : before[i] == 0))
                    {
                        p[i] = 0;
                        markedTies++;
                    }
                }
            }
            // Too many already-pruned ties: keep the last ones. Too few: add the first live ones, in order.
            for (int c = chunks.Count - 1; c >= 0 && markedTies > ties; c--)
            {
                if (inBucket[c] == 0) continue;
                ReadOnlySpan<uint> s = Keys(c);
                Span<byte> p = Flags(c);
                for (int i = s.Length - 1; i >= 0 && markedTies > ties; i--)
                    if (p[i] == 0 && Key(s[i]) == threshold) { p[i] = 1; markedTies--; }
            }
            for (int c = 0; c < chunks.Count && markedTies < ties; c++)
            {
                if (inBucket[c] == 0) continue;
                ReadOnlySpan<uint> s = Keys(c);
                Span<byte> p = Flags(c);
                int protectedIndex = largest[chunks[c].Array].Index - chunks[c].Start;
                for (int i = 0; i < s.Length && markedTies < ties; i++)
                    if (p[i] == 1 && i != protectedIndex && Key(s[i]) == threshold) { p[i] = 0; markedTies++; }
            }
        }
        finally
        {
            foreach (int[] h in histograms) ArrayPool<int>.Shared.Return(h);
        }
    }

    /// <summary>Adds each key's high 16 bits to <paramref name="histogram"/>; returns the largest key and its last index.</summary>
    private static (uint Key, int Index) HistogramAndMax(ReadOnlySpan<uint> s, int[] histogram)
    {
        // The histogram is scalar (scattered increments); the maximum is found in a separate vector pass, which is
        // cheaper than a branch per element in the histogram loop.
        foreach (uint bits in s)
            histogram[Key(bits) >> 16]++;

        int i = 0;
        uint best = 0;
        int bestIndex = 0;
        if (Vector256.IsHardwareAccelerated && s.Length >= Vector256<uint>.Count)
        {
            var maxKeys = Vector256<uint>.Zero;
            var maxIndex = Vector256<uint>.Zero;
            var index = Vector256.Create(0u, 1, 2, 3, 4, 5, 6, 7);
            var step = Vector256.Create((uint)Vector256<uint>.Count);
            for (; i <= s.Length - Vector256<uint>.Count; i += Vector256<uint>.Count, index += step)
            {
                Vector256<uint> keys = Key(Vector256.Create(s.Slice(i, Vector256<uint>.Count)));
                maxIndex = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(keys, maxKeys), index, maxIndex);
                maxKeys = Vector256.Max(maxKeys, keys);
            }
            for (int lane = 0; lane < Vector256<uint>.Count; lane++)
            {
                uint key = maxKeys.GetElement(lane);
                int at = (int)maxIndex.GetElement(lane);
                if (key > best || (key == best && at > bestIndex)) { best = key; bestIndex = at; }
            }
        }
        for (; i < s.Length; i++)
        {
            uint key = Key(s[i]);
            if (key >= best) { best = key; bestIndex = i; }
        }
        return (best, bestIndex);
    }

    /// <summary>Sets p[i] = 0 (pruned) where the key's high 16 bits are below <paramref name="bucket"/>, else 1; counts the low
    /// 16 bits of the keys in the bucket (but <paramref name="protectedIndex"/>) into <paramref name="low"/>.</summary>
    /// <returns>How many keys lie in the bucket.</returns>
    private static int MarkBelowAndCount(ReadOnlySpan<uint> s, Span<byte> p, uint bucket, int[] low, int protectedIndex)
    {
        int i = 0, count = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            const int Width = 4 * 8; // four vectors of keys narrow into one vector of bytes
            var target = Vector256.Create(bucket);
            var one = Vector256.Create((byte)1);
            for (; i <= s.Length - Width; i += Width)
            {
                var b0 = Vector256.ShiftRightLogical(Key(Vector256.Create(s.Slice(i, 8))), 16);
                var b1 = Vector256.ShiftRightLogical(Key(Vector256.Create(s.Slice(i + 8, 8))), 16);
                var b2 = Vector256.ShiftRightLogical(Key(Vector256.Create(s.Slice(i + 16, 8))), 16);
                var b3 = Vector256.ShiftRightLogical(Key(Vector256.Create(s.Slice(i + 24, 8))), 16);
                var below = Vector256.Narrow(
                    Vector256.Narrow(Vector256.LessThan(b0, target), Vector256.LessThan(b1, target)),
                    Vector256.Narrow(Vector256.LessThan(b2, target), Vector256.LessThan(b3, target)));
                Vector256.AndNot(one, below).CopyTo(p.Slice(i, Width));
                var equal = Vector256.Equals(b0, target) | Vector256.Equals(b1, target) | Vector256.Equals(b2, target) | Vector256.Equals(b3, target);
                if (equal == Vector256<uint>.Zero) continue;
                for (int j = i; j < i + Width; j++)
                {
                    uint key = Key(s[j]);
                    if (key >> 16 == bucket && j != protectedIndex) { low[key & 0xFFFF]++; count++; }
                }
            }
        }
        for (; i < s.Length; i++)
        {
            uint key = Key(s[i]);
            p[i] = key >> 16 < bucket ? (byte)0 : (byte)1;
            if (key >> 16 == bucket && i != protectedIndex) { low[key & 0xFFFF]++; count++; }
        }
        return count;
    }

    /// <summary>Runs the workers; one runs inline, so small tensors never wait for the thread pool.</summary>
    private static void ForEachWorker(int workers, Action<int> body)
    {
        if (workers == 1)
            body(0);
        else
            Parallel.For(0, workers, body);
    }

    /// <summary>Adds the workers' histograms into the first one and returns it.</summary>
    private static int[] Sum(int[][] histograms)
    {
        int[] total = histograms[0];
        for (int w = 1; w < histograms.Length; w++)
            for (int i = 0; i < 65536; i++) total[i] += histograms[w][i];
        return total;
    }

    /// <summary>Finds the bucket that holds the k-th (1-based) smallest entry; leaves in k the rank inside it.</summary>
    private static uint Locate(int[] histogram, ref long k)
    {
        for (uint b = 0; b < histogram.Length; b++)
        {
            if (k <= histogram[b])
                return b;
            k -= histogram[b];
        }
        throw new InvalidOperationException("k exceeds the number of selectable elements.");
    }

    /// <summary>The vector form of <see cref="Key(uint)"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> Key(Vector256<uint> bits)
    {
        var sign = Vector256.Create(0x8000_0000u);
        bits = Vector256.AndNot(bits, Vector256.Equals(bits, sign)); // −0 → +0
        return bits ^ (Vector256.ShiftRightArithmetic(bits.AsInt32(), 31).AsUInt32() | sign);
    }

    /// <summary>Maps a float's bits to a uint whose unsigned order is the float's order (−0 and +0 map alike).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static uint Key(uint bits)
    {
        if (bits == 0x8000_0000u) bits = 0; // −0 → +0
        uint flip = (uint)((int)bits >> 31) | 0x8000_0000u;
        return bits ^ flip;
    }
}
