using System.Runtime.CompilerServices;
using System.Diagnostics;

namespace Pruning.Sparse.Kernels;

/// <summary>
/// A small pool of dedicated kernel threads that spin briefly between jobs before they sleep. A sparse layer at
/// batch 1 takes tens to hundreds of microseconds, so waking thread-pool workers for every call (as Parallel.For
/// does) would cost a large share of it. The calling thread always takes part; jobs from different callers run one
/// after another; a job started from inside a job runs inline.
/// </summary>
internal sealed class WorkerPool
{
    /// <summary>How long an idle worker spins before it sleeps.</summary>
    private static readonly long SpinTicks = Stopwatch.Frequency / 10_000; // 100 µs

    public static WorkerPool Shared { get; } = new(Environment.ProcessorCount - 1);

    [ThreadStatic] private static bool t_insideJob;

    /// <summary>This thread's slot: worker i has i + 1, every other thread 0.</summary>
    [ThreadStatic] private static int t_slot;

    /// <summary>
    /// The calling thread's slot in [0, <see cref="Slots"/>): distinct for the threads working on one job at the same
    /// time (the caller has 0), so a kernel can give each its own part of one scratch buffer.
    /// </summary>
    public static int Slot => t_slot;

    /// <summary>How many threads can work on one job: the workers and the caller.</summary>
    public int Slots => Workers + 1;

    private readonly object _gate = new();
    private readonly object _sleep = new();
    private Job? _job;
    private long _generation;
    private int _sleepers;

    private WorkerPool(int workers)
    {
        Workers = Math.Max(0, workers);
        for (int i = 0; i < Workers; i++)
        {
            int slot = i + 1;
            new Thread(() => Loop(slot)) { IsBackground = true, Name = $"Pruning.Sparse worker {i}" }.Start();
        }
    }

    /// <summary>Threads besides the caller's.</summary>
    public int Workers { get; }

    /// <summary>Runs body(bounds[p], bounds[p + 1]) for every part p, returning when all are done; rethrows the first failure.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Run(int[] bounds, Action<int, int> body)
    {
        int parts = bounds.Length - 1;
        if (parts == 1 || Workers == 0 || t_insideJob || !Monitor.TryEnter(_gate))
        {
            // Inline: a single part, no workers, a nested call, or another caller holds the pool.
            for (int p = 0; p < parts; p++)
                if (bounds[p] < bounds[p + 1]) body(bounds[p], bounds[p + 1]);
            return;
        }
        try
        {
            var job = new Job(bounds, body);
            Volatile.Write(ref _job, job);
            Interlocked.Increment(ref _generation);
            if (Volatile.Read(ref _sleepers) > 0)
                lock (_sleep) Monitor.PulseAll(_sleep);
            // The caller works on the job too; a kernel that starts a job from inside this one runs it inline, like a
            // worker would (the gate is reentrant, so without the flag it would publish a second job over this one).
            t_insideJob = true;
            try
            {
                job.Work();
            }
            finally
            {
                t_insideJob = false;
            }
            var spin = new SpinWait();
            while (Volatile.Read(ref job.Remaining) > 0) spin.SpinOnce(sleep1Threshold: -1);
            Volatile.Write(ref _job, null);
            if (job.Failure is { } failure) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failure).Throw();
        }
        finally
        {
            Monitor.Exit(_gate);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Loop(int slot)
    {
        t_insideJob = true;
        t_slot = slot;
        long seen = 0;
        while (true)
        {
            long start = Stopwatch.GetTimestamp();
            while (Volatile.Read(ref _generation) == seen && Stopwatch.GetTimestamp() - start < SpinTicks) Thread.SpinWait(20);
            if (Volatile.Read(ref _generation) == seen)
            {
                lock (_sleep)
                {
                    Interlocked.Increment(ref _sleepers);
                    while (Volatile.Read(ref _generation) == seen) Monitor.Wait(_sleep);
                    Interlocked.Decrement(ref _sleepers);
                }
            }
            seen = Volatile.Read(ref _generation);
            Volatile.Read(ref _job)?.Work();
        }
    }

    private sealed class Job(int[] bounds, Action<int, int> body)
    {
        private int _next = -1;
        public int Remaining = bounds.Length - 1;
        public Exception? Failure;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Work()
        {
            int parts = bounds.Length - 1;
            int p;
            while ((p = Interlocked.Increment(ref _next)) < parts)
            {
                try
                {
                    if (bounds[p] < bounds[p + 1]) body(bounds[p], bounds[p + 1]);
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref Failure, e, null);
                }
                finally
                {
                    Interlocked.Decrement(ref Remaining);
                }
            }
        }
    }
}
