using System.Runtime.CompilerServices;
namespace Pruning.Sparse.Kernels;

/// <summary>Splits a kernel's rows into contiguous ranges of about equal work and runs them on the thread pool.</summary>
internal static class Parallelism
{
    /// <summary>Below this many multiply-adds a call runs on the calling thread: waking workers would cost more.</summary>
    internal const long MinWorkPerThread = 16_384;

    /// <summary>The thread count to use: <paramref name="requested"/> (0 = all cores), at most one per <see cref="MinWorkPerThread"/> of work and one per row.</summary>
    internal static int Threads(int requested, long work, int rows)
    {
        if (requested < 0) throw new ArgumentOutOfRangeException(nameof(requested), requested, "Thread count must be 0 (all cores) or positive.");
        int threads = requested == 0 ? Environment.ProcessorCount : requested;
        long byWork = Math.Max(1, work / MinWorkPerThread);
        return (int)Math.Max(1, Math.Min(Math.Min(threads, byWork), rows));
    }

    /// <summary>Parts per thread when a kernel runs on more than one thread.</summary>
    internal const int ChunksPerThread = 4;

    /// <summary>
    /// How many parts to cut a kernel into for <paramref name="threads"/> threads. More parts than threads, taken one
    /// at a time by whichever thread is free: the calling thread starts at once, while a worker whose core was asleep
    /// can take a long time to wake (measured on this 2-core VM: with 3 ms pauses between SpMV calls, two equal halves
    /// took 0.73 ms, longer than one thread alone, because the caller then waited for the worker's half).
    /// </summary>
    internal static int Chunks(int threads, int rows) => threads <= 1 ? 1 : Math.Max(1, Math.Min(rows, threads * ChunksPerThread));

    /// <summary>
    /// Bounds that split <paramref name="count"/> items of equal cost into as many parts as <paramref name="work"/>
    /// justifies on <paramref name="threads"/> threads (<see cref="Threads"/>, <see cref="Chunks"/>), at most one part per
    /// <paramref name="unit"/> items.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static int[] Even(int count, int threads, long work, int unit = 1)
    {
        int units = Math.Max(1, count / unit);
        int parts = Chunks(Threads(threads, work, units), units);
        var bounds = new int[parts + 1];
        for (int k = 1; k <= parts; k++) bounds[k] = (int)((long)count * k / parts);
        return bounds;
    }

    /// <summary>
    /// Row boundaries (length <paramref name="parts"/> + 1) that give each part about the same number of non-zeros,
    /// counting each row as at least one so that long runs of empty rows are shared too.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static int[] SplitByNonZeros(ReadOnlySpan<int> rowPointers, int parts)
    {
        int rows = rowPointers.Length - 1;
        var bounds = new int[parts + 1];
        long total = (long)rowPointers[rows] + rows;
        int row = 0;
        for (int p = 1; p < parts; p++)
        {
            long goal = total * p / parts;
            while (row < rows && (long)rowPointers[row] + row < goal) row++;
            bounds[p] = row;
        }
        bounds[parts] = rows;
        return bounds;
    }

    /// <summary>Runs <paramref name="body"/>(first, end) over the ranges given by <paramref name="bounds"/>.</summary>
    internal static void Run(int[] bounds, Action<int, int> body) => WorkerPool.Shared.Run(bounds, body);
}
