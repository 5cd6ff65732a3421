using Pruning.Sparse.Kernels;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;

namespace Pruning.Sparse.Tests.Kernels;

/// <summary>The kernel thread pool and the objects documented as shareable, under concurrent use.</summary>
public class WorkerPoolTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    [Fact]
    public void Several_models_on_several_threads_give_the_single_threaded_results()
    {
        // Each row is summed in one place whatever the split, so every thread count gives bit-identical results.
        var models = new[]
        {
            new SparseModel(new FeatureShape(512), [new LinearLayer(CsrMatrix.FromDense(Reference.Sparse(384, 512, 0.9, 1), 384, 512), Reference.Random(384, 2))]),
            new SparseModel(new FeatureShape(300), [new LinearLayer(WeightMatrix.FromDense(Reference.Random(200 * 300, 3), 200, 300, MatrixFormat.Dense), default),
                new ActivationLayer(ActivationKind.ReLU)]),
            Layers.LayerTests.SmallCnn(),
        };
        int[] batches = [1, 7, 16];
        var inputs = models.Select((m, i) => batches.Select(b => Reference.Random(m.InputShape.Size * b, 10 + i * 3 + b)).ToArray()).ToArray();
        var expected = models.Select((m, i) => batches.Select((b, k) => m.Run(inputs[i][k], b, threads: 1)).ToArray()).ToArray();

        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        var threads = Enumerable.Range(0, 6).Select(t => new Thread(() =>
        {
            for (int iteration = 0; iteration < 150; iteration++)
            {
                int m = (t + iteration) % models.Length, k = iteration % batches.Length;
                float[] output = models[m].Run(inputs[m][k], batches[k], threads: 0);
                if (!output.AsSpan().SequenceEqual(expected[m][k])) failures.Add($"thread {t}, iteration {iteration}, model {m}, batch {batches[k]}");
            }
        })).ToArray();
        foreach (var thread in threads) thread.Start();
        foreach (var thread in threads) thread.Join(Deadline).Should().BeTrue("no run may hang");
        failures.Should().BeEmpty();
    }

    [Fact]
    public void One_matrix_shared_by_threads_with_different_thread_counts_always_uses_a_whole_row_split()
    {
        // The matrix caches its row split for the last thread count; threads asking for 1, 2, 3 and 4 parts at once
        // make it republish the cache constantly. A torn read would run with mismatched bounds and miss rows.
        var csr = CsrMatrix.FromDense(Reference.Sparse(997, 640, 0.85, 7), 997, 640);
        float[] x = Reference.Random(640 * 9, 8);
        var expected = new float[997 * 9];
        csr.Multiply(x, expected, 9, default, threads: 1);
        var failures = 0;
        var threads = Enumerable.Range(1, 4).Select(count => new Thread(() =>
        {
            var y = new float[997 * 9];
            for (int i = 0; i < 400; i++)
            {
                Array.Clear(y);
                csr.Multiply(x, y, 9, default, threads: count);
                if (!y.AsSpan().SequenceEqual(expected)) Interlocked.Increment(ref failures);
            }
        })).ToArray();
        foreach (var thread in threads) thread.Start();
        foreach (var thread in threads) thread.Join(Deadline).Should().BeTrue();
        failures.Should().Be(0);
    }

    [Fact]
    public async Task Jobs_started_from_jobs_run_every_part_exactly_once_on_the_caller_and_on_workers()
    {
        var pool = WorkerPool.Shared;
        int[] outer = [0, 8, 16, 24, 32, 40, 48, 56, 64];
        var counts = new int[64 * 64];
        var threadsSeen = new System.Collections.Concurrent.ConcurrentDictionary<int, bool>();
        var run = Task.Run(() => pool.Run(outer, (first, end) =>
        {
            threadsSeen[Environment.CurrentManagedThreadId] = true;
            for (int row = first; row < end; row++)
            {
                int r = row;
                // A nested job: it must run inline (on whichever thread took the outer part) and completely.
                pool.Run([0, 16, 32, 48, 64], (a, b) => { for (int c = a; c < b; c++) Interlocked.Increment(ref counts[r * 64 + c]); });
            }
        }));
        await run.WaitAsync(Deadline); // nested jobs must not deadlock
        counts.Should().AllBeEquivalentTo(1);
    }

    [Fact]
    public void A_failing_part_is_rethrown_to_the_caller_and_the_pool_keeps_working()
    {
        var pool = WorkerPool.Shared;
        var act = () => pool.Run([0, 1, 2, 3, 4], (first, _) => { if (first == 2) throw new InvalidOperationException("part 2"); });
        act.Should().Throw<InvalidOperationException>().WithMessage("part 2");
        var sums = new long[4];
        pool.Run([0, 1, 2, 3, 4], (first, end) => { for (int p = first; p < end; p++) sums[p] = p + 1; });
        sums.Should().Equal(1, 2, 3, 4);
    }

    [Fact]
    public async Task Concurrent_callers_each_get_all_of_their_parts()
    {
        var pool = WorkerPool.Shared;
        var tasks = Enumerable.Range(0, 8).Select(t => Task.Run(() =>
        {
            for (int i = 0; i < 300; i++)
            {
                var done = new int[12];
                pool.Run([0, 2, 4, 6, 8, 10, 12], (first, end) => { for (int p = first; p < end; p++) Interlocked.Increment(ref done[p]); });
                if (done.Any(d => d != 1)) return false;
            }
            return true;
        })).ToArray();
        bool[] results = await Task.WhenAll(tasks).WaitAsync(Deadline);
        results.Should().OnlyContain(ok => ok);
    }
}
