namespace Pruning.Sparse.Timing;

/// <summary>A source of timestamps for latency measurements; tests inject a fake one.</summary>
public interface ILatencyClock
{
    /// <summary>The current time in ticks.</summary>
    long Timestamp();

    /// <summary>Ticks per millisecond.</summary>
    double TicksPerMillisecond { get; }
}
