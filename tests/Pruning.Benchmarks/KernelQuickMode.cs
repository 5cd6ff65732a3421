using System.Globalization;
using System.Runtime.Intrinsics;
using Pruning.Sparse.Kernels;
using Pruning.Sparse.Matrices;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Benchmarks;

/// <summary>
/// <c>-- quick --rows R --cols C --sparsity S --batch B --threads T [--format auto|csr|dense] [--json]</c>: our kernel
/// against TorchSharp's dense matmul on the same matrix, in one process, at the same thread count, interleaved;
/// medians after warm-up. Without sizes it runs the issue's grid (4096², 90 % and 50 %, batch 1 and 64).
/// Also measures a plain streaming read, the bandwidth ceiling for SpMV.
/// </summary>
internal static class KernelQuickMode
{
    public static bool Wants(string[] args) => args.Any(a => a is "--rows" or "--cols" or "--sparsity" or "--batch" or "--threads" or "--json" or "--format" or "--kernels" or "--simd");

    public static void Run(string[] args)
    {
        int threads = Int(args, "--threads", Environment.ProcessorCount);
        bool json = args.Contains("--json");
        var format = Enum.Parse<MatrixFormat>(Arg(args, "--format") ?? "Auto", ignoreCase: true);
        SimdLevel simd = Arg(args, "--simd") is { } level ? Enum.Parse<SimdLevel>(level, ignoreCase: true) : SimdSupport.Best;
        using var stream = new StreamingRead(threads);

        var shapes = Arg(args, "--rows") is null
            ? new[] { (4096, 4096, 0.9, 1), (4096, 4096, 0.9, 64), (4096, 4096, 0.5, 1), (4096, 4096, 0.5, 64) }
            : new[] { (Int(args, "--rows", 4096), Int(args, "--cols", 4096), Double(args, "--sparsity", 0.9), Int(args, "--batch", 1)) };
        foreach (var (rows, cols, sparsity, batch) in shapes)
        {
            var m = Measure(rows, cols, sparsity, batch, threads, format, simd, stream);
            string line = FormattableString.Invariant(
                $"{{\"kernel\":\"{m.Kernel}\",\"rows\":{rows},\"cols\":{cols},\"sparsity\":{sparsity},\"batch\":{batch},\"threads\":{threads},\"sparse_ms\":{m.SparseMs:F4},\"dense_ms\":{m.DenseMs:F4},\"ratio\":{m.DenseMs / m.SparseMs:F3},\"gbps\":{m.Bytes / m.SparseMs / 1e6:F3},\"bytes_per_nnz\":{(double)m.Bytes / Math.Max(1, m.NonZeros):F3},\"stream_gbps\":{m.StreamGBps:F3}}}");
            Console.WriteLine(json ? line : $"{rows}×{cols} {sparsity:P0} batch {batch}: {m.Kernel} {m.SparseMs:F3} ms vs TorchSharp dense {m.DenseMs:F3} ms → {m.DenseMs / m.SparseMs:F2}×; {m.Bytes / m.SparseMs / 1e6:F2} GB/s ({m.Bytes / m.SparseMs / 1e6 / m.StreamGBps:P0} of a streaming read measured alongside, {m.StreamGBps:F1} GB/s), {(double)m.Bytes / Math.Max(1, m.NonZeros):F2} B/nnz");
        }
    }

    internal readonly record struct Result(string Kernel, double SparseMs, double DenseMs, long Bytes, long NonZeros, double StreamGBps);

    internal static Result Measure(int rows, int cols, double sparsity, int batch, int threads, MatrixFormat format, SimdLevel simd, StreamingRead? stream = null)
    {
        torch.set_num_threads(threads);
        var random = new Random(42);
        var dense = new float[(long)rows * cols];
        for (long i = 0; i < dense.Length; i++)
            dense[i] = random.NextDouble() < sparsity ? 0f : (float)(random.NextDouble() * 2 - 1);
        WeightMatrix matrix = WeightMatrix.FromDense(dense, rows, cols, format);
        var x = new float[(long)cols * batch];
        for (long i = 0; i < x.Length; i++) x[i] = (float)(random.NextDouble() * 2 - 1);
        var y = new float[(long)rows * batch];

        using var w = torch.tensor(dense, [rows, cols]);
        // TorchSharp's natural layout: a batch of rows [batch, cols] times Wᵀ (for batch 1, a matrix-vector product).
        using var xt = torch.tensor(x, [cols, batch]).t().contiguous();
        using var wt = w.t();
        Action torchDense = batch == 1
            ? () => { using var _ = xt.matmul(wt); }
            : () => { using var _ = xt.matmul(wt); };
        Action ours = () => matrix.Multiply(x, y, batch, default, threads, simd);

        double budget = Math.Max(1, 2e9 / ((double)rows * cols * Math.Max(1, batch / 8.0)));
        int runs = (int)Math.Clamp(budget, 15, 400);
        for (int i = 0; i < 5; i++) { torchDense(); ours(); }
        var s = new List<double>(); var d = new List<double>(); var g = new List<double>();
        for (int i = 0; i < runs; i++)
        {
            s.Add(QuickMode.Time(ours));
            d.Add(QuickMode.Time(torchDense));
            if (stream is not null && i % 8 == 0) g.Add(stream.GBps());
        }
        string kernel = matrix.Format == MatrixFormat.Csr ? (batch == 1 ? "csr-spmv" : "csr-spmm") : (batch == 1 ? "dense-gemv" : "dense-gemm");
        return new Result(kernel, QuickMode.Median(s), QuickMode.Median(d), matrix.StoredBytes, matrix.NonZeros, g.Count > 0 ? QuickMode.Median(g) : double.NaN);
    }

    /// <summary>
    /// Summing a 256 MB float array on the kernels' threads: what memory delivers to a plain streaming read, measured
    /// between the kernel runs so that both see the same machine state.
    /// </summary>
    internal sealed unsafe class StreamingRead : IDisposable
    {
        private const int Count = 64 << 20;
        private readonly float* _data = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(Count * sizeof(float), 64);
        private readonly int[] _bounds;

        public StreamingRead(int threads)
        {
            new Span<float>(_data, Count).Fill(1f);
            _bounds = Enumerable.Range(0, threads + 1).Select(t => (int)((long)Count * t / threads / 64 * 64)).ToArray();
        }

        public double GBps()
        {
            nint data = (nint)_data;
            double ms = QuickMode.Time(() => Pruning.Sparse.Kernels.Parallelism.Run(_bounds, (first, end) =>
            {
                float* q = (float*)data;
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (long i = first; i + 32 <= end; i += 32)
                {
                    a0 += Vector256.Load(q + i); a1 += Vector256.Load(q + i + 8);
                    a2 += Vector256.Load(q + i + 16); a3 += Vector256.Load(q + i + 24);
                }
                if (Vector256.Sum(a0 + a1 + a2 + a3) < 0) Console.Write("");
            }));
            return (double)Count * sizeof(float) / ms / 1e6;
        }

        public void Dispose() => System.Runtime.InteropServices.NativeMemory.AlignedFree(_data);
    }

    /// <summary>The value after <paramref name="name"/> on the command line, or null (the quick modes' options).</summary>
    internal static string? Arg(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    internal static int Int(string[] args, string name, int fallback) =>
        Arg(args, name) is { } s ? int.Parse(s, CultureInfo.InvariantCulture) : fallback;

    internal static double Double(string[] args, string name, double fallback) =>
        Arg(args, name) is { } s ? double.Parse(s, CultureInfo.InvariantCulture) : fallback;
}
