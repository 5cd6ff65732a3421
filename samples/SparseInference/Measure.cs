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

    /// <summary>
    /// Medians of single calls timed in blocks: every round runs each variant (order rotating) untimed for
    /// <paramref name="warmupMs"/>, then times its calls for <paramref name="blockMs"/>. For ONNX Runtime, whose intra-op
    /// workers keep spinning for tens of milliseconds after a call and would slow whatever ran right after it.
    /// </summary>
    public static double[] Blocks(IReadOnlyList<Action> variants, int rounds, double warmupMs = 50, double blockMs = 30)
    {
        var times = variants.Select(_ => new List<double>()).ToArray();
        for (int round = 0; round < rounds; round++)
            for (int k = 0; k < variants.Count; k++)
            {
                int v = (round + k) % variants.Count;
                var clock = Stopwatch.StartNew();
                do variants[v](); while (clock.Elapsed.TotalMilliseconds < warmupMs);
                clock.Restart();
                for (int calls = 0; calls < 3 || clock.Elapsed.TotalMilliseconds < blockMs; calls++) times[v].Add(Time(variants[v]));
            }
        return times.Select(Median).ToArray();
    }
}
