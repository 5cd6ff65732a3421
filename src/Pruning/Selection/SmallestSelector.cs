using System.Runtime.InteropServices;

namespace Pruning.Selection;

/// <summary>
/// Marks exactly k elements with the smallest scores across one or more score arrays, in O(n), by a two-pass radix
/// select over order-preserving 32-bit keys.
/// </summary>
/// <remarks>
/// Order is (score, array index, element index): among equal scores the earlier element is pruned first, so the
/// result is deterministic. Each array's largest element (the last among equals) is protected, so at least one
/// element of every array always survives. Scores must be finite.
/// </remarks>
internal static class SmallestSelector
{
    /// <summary>The largest k that <see cref="Select"/> accepts for arrays of these lengths.</summary>
    public static long MaxSelectable(IReadOnlyList<float[]> scores)
    {
        long total = 0;
        foreach (float[] s in scores)
            total += Math.Max(s.Length - 1, 0);
        return total;
    }

    /// <summary>Sets <c>pruned[a][i] = 1</c> for exactly <paramref name="k"/> elements and 0 elsewhere.</summary>
    public static void Select(IReadOnlyList<float[]> scores, long k, IReadOnlyList<byte[]> pruned)
    {
        if (scores.Count != pruned.Count)
            throw new ArgumentException("One output array per score array is required.", nameof(pruned));
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(k, MaxSelectable(scores));

        int[] keep = new int[scores.Count];
        for (int a = 0; a < scores.Count; a++)
        {
            if (pruned[a].Length != scores[a].Length)
                throw new ArgumentException($"Output array {a} has {pruned[a].Length} elements, its scores {scores[a].Length}.", nameof(pruned));
            Array.Clear(pruned[a]);
            keep[a] = IndexOfMax(scores[a]);
        }
        if (k == 0)
            return;

        // Pass 1: histogram of the high 16 bits finds the bucket that holds the k-th smallest key.
        var high = new long[65536];
        for (int a = 0; a < scores.Count; a++)
        {
            ReadOnlySpan<float> s = scores[a];
            for (int i = 0; i < s.Length; i++)
                if (i != keep[a]) high[Key(s[i]) >> 16]++;
        }
        uint bucket = Locate(high, ref k);

        // Pass 2: histogram of the low 16 bits inside that bucket gives the exact threshold key.
        var low = new long[65536];
        for (int a = 0; a < scores.Count; a++)
        {
            ReadOnlySpan<float> s = scores[a];
            for (int i = 0; i < s.Length; i++)
            {
                uint key = Key(s[i]);
                if (key >> 16 == bucket && i != keep[a]) low[key & 0xFFFF]++;
            }
        }
        uint threshold = bucket << 16 | Locate(low, ref k);

        // Pass 3: everything below the threshold, and the first k elements equal to it.
        long ties = k;
        for (int a = 0; a < scores.Count; a++)
        {
            ReadOnlySpan<float> s = scores[a];
            Span<byte> p = pruned[a];
            for (int i = 0; i < s.Length; i++)
            {
                uint key = Key(s[i]);
                if (i == keep[a])
                    continue;
                if (key < threshold)
                    p[i] = 1;
                else if (key == threshold && ties > 0)
                {
                    p[i] = 1;
                    ties--;
                }
            }
        }
    }

    /// <summary>Finds the bucket that holds the k-th (1-based) smallest entry; leaves in k the rank inside it.</summary>
    private static uint Locate(long[] histogram, ref long k)
    {
        for (uint b = 0; b < histogram.Length; b++)
        {
            if (k <= histogram[b])
                return b;
            k -= histogram[b];
        }
        throw new InvalidOperationException("k exceeds the number of selectable elements.");
    }

    private static int IndexOfMax(ReadOnlySpan<float> s)
    {
        int best = -1;
        uint bestKey = 0;
        for (int i = 0; i < s.Length; i++)
        {
            uint key = Key(s[i]);
            if (best < 0 || key >= bestKey)
            {
                best = i;
                bestKey = key;
            }
        }
        return best;
    }

    /// <summary>Maps a float to a uint whose unsigned order is the float's order (−0 and +0 map alike).</summary>
    internal static uint Key(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value + 0f);
        return (bits & 0x8000_0000u) != 0 ? ~bits : bits | 0x8000_0000u;
    }
}
