namespace Pruning.Sparse.Timing;

/// <summary>
/// The one way this library times code: warm-up runs, then timed runs, median in milliseconds. Several candidates are
/// timed round-robin, so that all of them see the same machine state (a busy neighbour, a cold cache) alike.
/// </summary>
internal static class LatencyTimer
{
    /// <summary>The median of <paramref name="runs"/> timed calls of <paramref name="body"/> after <paramref name="warmup"/> untimed ones.</summary>
    public static double Median(Action body, int warmup, int runs, ILatencyClock clock) => Medians([body], warmup, runs, clock)[0];

    /// <summary>Each candidate's median, timing them in turn: run r of every candidate before run r + 1 of any.</summary>
    public static double[] Medians(IReadOnlyList<Action> candidates, int warmup, int runs, ILatencyClock clock)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        ArgumentOutOfRangeException.ThrowIfNegative(warmup);
        ArgumentOutOfRangeException.ThrowIfLessThan(runs, 1);
        ArgumentNullException.ThrowIfNull(clock);
        for (int w = 0; w < warmup; w++)
            foreach (Action candidate in candidates) candidate();
        var times = candidates.Select(_ => new double[runs]).ToArray();
        for (int r = 0; r < runs; r++)
            for (int c = 0; c < candidates.Count; c++)
            {
                long start = clock.Timestamp();
                candidates[c]();
                times[c][r] = (clock.Timestamp() - start) / clock.TicksPerMillisecond;
            }
        return times.Select(t => { Array.Sort(t); return t[t.Length / 2]; }).ToArray();
    }
}
