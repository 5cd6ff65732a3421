using System.Diagnostics;

namespace Pruning.Sparse.Timing;

/// <summary>The real clock (<see cref="Stopwatch"/>).</summary>
internal sealed class StopwatchClock : ILatencyClock
{
    private StopwatchClock() { }

    /// <summary>The shared instance.</summary>
    public static StopwatchClock Instance { get; } = new();

    /// <inheritdoc />
    public long Timestamp() => Stopwatch.GetTimestamp();

    /// <inheritdoc />
    public double TicksPerMillisecond => Stopwatch.Frequency / 1000.0;
}
