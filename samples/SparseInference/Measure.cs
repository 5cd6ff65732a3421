using System.Diagnostics;

/// <summary>The sample's timing and arg max.</summary>
internal static class Measure
{
    public static int ArgMax(ReadOnlySpan<float> v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }

    public static double Time(Action action)
    {
        long start = Stopwatch.GetTimestamp();
        action();
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    public static double Median(List<double> values)
    {
        values.Sort();
        return values[values.Count / 2];
    }

    /// <summary>
    /// Medians of <paramref name="runs"/> timed calls of each variant after <paramref name="warmup"/> untimed ones, the
    /// order rotating every round: whichever runs right after a TorchSharp call pays for waking the kernel threads.
    /// </summary>
    public static double[] Interleaved(IReadOnlyList<Action> variants, int warmup, int runs)
    {
        for (int i = 0; i < warmup; i++) foreach (Action v in variants) v();
        var times = variants.Select(_ => new List<double>()).ToArray();
        for (int i = 0; i < runs; i++)
            for (int k = 0; k < variants.Count; k++)
            {
                int v = (i + k) % variants.Count;
                times[v].Add(Time(variants[v]));
            }
        return times.Select(Median).ToArray();
    }
}
