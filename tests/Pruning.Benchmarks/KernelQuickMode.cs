using System.Globalization;
using System.Runtime.Intrinsics;
using Pruning.Benchmarks.Baselines;
using Pruning.Sparse.Kernels;
using Pruning.Sparse.Matrices;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Benchmarks;

/// <summary>
/// <c>-- quick --rows R --cols C --sparsity S --batch B --threads T [--format auto,csrfloat16,csrint8] [--cache warm|cold|both]
/// [--baselines torchsharp,ours-dense,openblas,onnxruntime,mkl-csr] [--json]</c>: our kernel against every dense baseline on the
/// same matrix, in one process, at the same thread count; each of our formats (comma-separated; auto = fp32 CSR or
/// dense by density, csrfloat16 and csrint8 = compressed values) is one more variant. Without sizes it runs the issue's grid (4096², 90 % and
/// 50 %, batch 1 and 64). "warm": one matrix, repeated (it stays in cache when it fits); "cold": each variant cycles
/// through copies whose total is at least 4× the last-level cache. Variants run in interleaved blocks: each block first
/// runs its variant untimed for 50 ms (ONNX Runtime's and OpenBLAS's workers keep spinning after a call and would slow
/// whatever runs next), then times single calls for 20 ms; the order rotates every round; medians.
/// Also measures a plain streaming read, the bandwidth ceiling for SpMV.
/// </summary>
internal static class KernelQuickMode
{
    public static bool Wants(string[] args) => args.Any(a => a is "--rows" or "--cols" or "--sparsity" or "--batch" or "--threads" or "--json" or "--format" or "--kernels" or "--simd" or "--cache" or "--baselines" or "--structure");

    private static readonly string[] AllBaselines = ["torchsharp", "ours-dense", "openblas", "onnxruntime", "mkl-csr"];

    /// <summary>The sparse peer: not a dense baseline, so never "the fastest dense".</summary>
    private const string MklCsrBaseline = "mkl-csr";

    public static void Run(string[] args)
    {
        int threads = Int(args, "--threads", Environment.ProcessorCount);
        bool json = args.Contains("--json");
        // --structure: where the zeros are. unstructured (default), blocks4x1 (whole R×C blocks, as Blocks(r, c) prunes) or
        // nm2of4 / nm4of8 (N of every M consecutive inputs; the sparsity is then 1 − N/M).
        string structure = Arg(args, "--structure") ?? "unstructured";
        (int R, int C)? block = structure.StartsWith("blocks", StringComparison.Ordinal)
            ? (int.Parse(structure[6..].Split('x')[0], CultureInfo.InvariantCulture), int.Parse(structure[6..].Split('x')[1], CultureInfo.InvariantCulture)) : null;
        (int N, int M)? pattern = structure switch { "nm2of4" => (2, 4), "nm4of8" => (4, 8), _ => null };
        if (block is null && pattern is null && structure != "unstructured")
            throw new ArgumentException($"--structure must be unstructured, blocksRxC (1x4, 4x1, 4x4) or nm2of4/nm4of8, not '{structure}'.");
        string defaultFormats = block is { } b ? $"auto,bsr{b.R}x{b.C}" : pattern is { } p ? $"auto,nm{p.N}of{p.M}" : "auto,csrfloat16,csrint8";
        MatrixFormat[] formats = (Arg(args, "--format") ?? defaultFormats).Split(',', StringSplitOptions.RemoveEmptyEntries)
            .Select(f => Enum.Parse<MatrixFormat>(f.Replace("-", ""), ignoreCase: true)).ToArray();
        SimdLevel simd = Arg(args, "--simd") is { } level ? Enum.Parse<SimdLevel>(level, ignoreCase: true) : SimdSupport.Best;
        string[] caches = (Arg(args, "--cache") ?? "both") switch
        {
            "both" => ["warm", "cold"],
            "warm" => ["warm"],
            "cold" => ["cold"],
            var other => throw new ArgumentException($"--cache must be warm, cold or both, not '{other}'."),
        };
        string[] baselines = (Arg(args, "--baselines") ?? string.Join(",", AllBaselines)).Split(',', StringSplitOptions.RemoveEmptyEntries);
        if (baselines.FirstOrDefault(b => !AllBaselines.Contains(b)) is { } unknown)
            throw new ArgumentException($"--baselines: unknown baseline '{unknown}'; known: {string.Join(", ", AllBaselines)}.");
        if (baselines.Contains("openblas") && !OpenBlas.Available)
        {
            Console.Error.WriteLine("OpenBLAS is not installed (sudo apt-get install libopenblas0-pthread); measuring without it.");
            baselines = baselines.Where(b => b != "openblas").ToArray();
        }
        if (baselines.Contains(MklCsrBaseline) && !MklCsr.Available)
        {
            Console.Error.WriteLine("libtorch_cpu.so (MKL) was not found next to the benchmark; measuring without mkl-csr.");
            baselines = baselines.Where(b => b != MklCsrBaseline).ToArray();
        }
        long llc = LastLevelCacheBytes();
        using var stream = new StreamingRead(threads);
        if (!json) Console.WriteLine($"{threads} threads, {SimdSupport.Best} (measuring {simd}), last-level cache {llc >> 20} MiB; cold = copies totalling ≥ {4 * llc >> 20} MiB per variant");

        var shapes = Arg(args, "--rows") is null
            ? new[] { (4096, 4096, 0.9, 1), (4096, 4096, 0.9, 64), (4096, 4096, 0.5, 1), (4096, 4096, 0.5, 64) }
            : new[] { (Int(args, "--rows", 4096), Int(args, "--cols", 4096), Double(args, "--sparsity", 0.9), Int(args, "--batch", 1)) };
        if (pattern is { } nm) shapes = shapes.Select(sh => (sh.Item1, sh.Item2, 1.0 - (double)nm.N / nm.M, sh.Item4)).Distinct().ToArray();
        foreach (var (rows, cols, sparsity, batch) in shapes)
            foreach (string cache in caches)
            {
                Result result = Measure(rows, cols, sparsity, batch, threads, formats, simd, cache, llc, baselines, stream, block, pattern);
                var fastest = result.Baselines.Where(b => b.Name != MklCsrBaseline).MinBy(b => b.Ms);
                if (!json)
                {
                    Console.WriteLine(FormattableString.Invariant($"{rows}×{cols} {sparsity:P0} {structure} batch {batch} {cache} (streaming read {result.StreamGBps:F1} GB/s)"));
                    foreach (var (baseline, ms) in result.Baselines)
                        Console.WriteLine(FormattableString.Invariant($"    {baseline,-12} {ms,9:F3} ms{(baseline == fastest.Name ? "   (fastest dense)" : "")}"));
                }
                foreach (Ours m in result.Ours)
                {
                    double gbps = m.Bytes / m.Ms / 1e6, bytesPerNnz = (double)m.Bytes / Math.Max(1, m.NonZeros);
                    if (!json)
                    {
                        Console.WriteLine(FormattableString.Invariant(
                            $"    {m.Kernel,-16} {m.Ms,9:F3} ms → {fastest.Ms / m.Ms,6:F2}× the fastest dense; {gbps:F1} GB/s ({gbps / result.StreamGBps:P0} of the streaming read), {bytesPerNnz:F2} B/nnz, {m.Copies} cop{(m.Copies == 1 ? "y" : "ies")}"));
                        continue;
                    }
                    foreach (var (baseline, ms) in result.Baselines)
                        Console.WriteLine(FormattableString.Invariant(
                            $"{{\"kernel\":\"{m.Kernel}\",\"format\":\"{m.Format}\",\"cache\":\"{cache}\",\"structure\":\"{structure}\",\"baseline\":\"{baseline}\",\"rows\":{rows},\"cols\":{cols},\"sparsity\":{sparsity},\"batch\":{batch},\"threads\":{threads},\"copies\":{m.Copies},\"sparse_ms\":{m.Ms:F4},\"baseline_ms\":{ms:F4},\"dense_ms\":{ms:F4},\"ratio\":{ms / m.Ms:F3},\"fastest_baseline\":{(baseline == fastest.Name ? "true" : "false")},\"gbps\":{gbps:F3},\"bytes_per_nnz\":{bytesPerNnz:F3},\"stream_gbps\":{result.StreamGBps:F3},\"llc_bytes\":{llc}}}"));
                }
            }
    }

    /// <summary>One of our formats: its kernel name, JSON format name, median time, bytes read and copies cycled.</summary>
    internal readonly record struct Ours(string Kernel, string Format, double Ms, long Bytes, long NonZeros, int Copies);

    internal readonly record struct Result(Ours[] Ours, (string Name, double Ms)[] Baselines, double StreamGBps);

    /// <summary>The JSON name of a stored format.</summary>
    internal static string Name(MatrixFormat format) => format switch
    {
        MatrixFormat.Csr => "csr",
        MatrixFormat.CsrFloat16 => "csr-fp16",
        MatrixFormat.CsrInt8 => "csr-int8",
        MatrixFormat.Bsr1x4 => "bsr1x4",
        MatrixFormat.Bsr4x1 => "bsr4x1",
        MatrixFormat.Bsr4x4 => "bsr4x4",
        MatrixFormat.Nm2of4 => "nm2of4",
        MatrixFormat.Nm4of8 => "nm4of8",
        _ => "dense",
    };

    internal static unsafe Result Measure(int rows, int cols, double sparsity, int batch, int threads, IReadOnlyList<MatrixFormat> formats, SimdLevel simd,
        string cache, long llc, IReadOnlyList<string> baselines, StreamingRead? stream = null, (int R, int C)? block = null, (int N, int M)? pattern = null)
    {
        torch.set_num_threads(threads);
        if (OpenBlas.Available) OpenBlas.Threads(threads);
        var random = new Random(42);
        float[] NewDense()
        {
            var dense = GC.AllocateUninitializedArray<float>(rows * cols, pinned: true);
            if (pattern is { } nm)
            {
                // N random non-zeros in every group of M.
                Span<int> order = stackalloc int[nm.M];
                for (long g = 0; g < dense.Length / nm.M; g++)
                {
                    for (int k = 0; k < nm.M; k++) order[k] = k;
                    random.Shuffle(order);
                    for (int k = 0; k < nm.M; k++) dense[g * nm.M + order[k]] = k < nm.N ? (float)(random.NextDouble() * 2 - 1) : 0f;
                }
            }
            else if (block is { } b)
            {
                for (int br = 0; br < rows / b.R; br++)
                    for (int bc = 0; bc < cols / b.C; bc++)
                    {
                        bool zero = random.NextDouble() < sparsity;
                        for (int i = 0; i < b.R; i++)
                            for (int k = 0; k < b.C; k++)
                                dense[(long)(br * b.R + i) * cols + bc * b.C + k] = zero ? 0f : (float)(random.NextDouble() * 2 - 1);
                    }
            }
            else
                for (long i = 0; i < dense.Length; i++)
                    dense[i] = random.NextDouble() < sparsity ? 0f : (float)(random.NextDouble() * 2 - 1);
            return dense;
        }
        int Copies(long bytes) => cache == "warm" ? 1 : (int)Math.Max(1, (4 * llc + bytes - 1) / bytes);

        // Per format, as many copies (each a different matrix) as its size needs; the dense sources double as the
        // dense baselines' copies.
        var sources = new List<float[]> { NewDense() };
        var matrices = formats.Select(f => new List<WeightMatrix> { WeightMatrix.FromDense(sources[0], rows, cols, f) }).ToArray();
        int[] copies = matrices.Select(m => Copies(m[0].StoredBytes)).ToArray();
        int denseCopies = Copies((long)rows * cols * sizeof(float));
        for (int k = 1; k < Math.Max(copies.Max(), denseCopies); k++)
        {
            float[] dense = NewDense();
            for (int f = 0; f < formats.Count; f++)
                if (k < copies[f]) matrices[f].Add(WeightMatrix.FromDense(dense, rows, cols, formats[f]));
            if (k < denseCopies) sources.Add(dense);
        }
        var x = GC.AllocateUninitializedArray<float>(cols * batch, pinned: true);
        for (long i = 0; i < x.Length; i++) x[i] = (float)(random.NextDouble() * 2 - 1);
        var y = GC.AllocateUninitializedArray<float>(rows * batch, pinned: true);

        var disposables = new List<IDisposable>();
        var variants = new List<Action>();
        static Action Cycle<T>(IReadOnlyList<T> items, Action<T> run)
        {
            int next = 0;
            return () => run(items[next++ % items.Count]);
        }
        foreach (var list in matrices) variants.Add(Cycle(list, m => m.Multiply(x, y, batch, default, threads, simd)));
        foreach (string baseline in baselines)
            switch (baseline)
            {
                case "ours-dense":
                    variants.Add(Cycle(sources.Select(d => WeightMatrix.FromDense(d, rows, cols, MatrixFormat.Dense)).ToArray(),
                        m => m.Multiply(x, y, batch, default, threads, simd)));
                    break;
                case "torchsharp":
                {
                    // TorchSharp's natural layout: a batch of rows [batch, cols] times Wᵀ (for batch 1, a matrix-vector product).
                    var xt = torch.tensor(x, [batch, cols]);
                    var weights = sources.Select(d => torch.tensor(d, [rows, cols])).ToArray();
                    var transposed = weights.Select(w => w.t()).ToArray();
                    disposables.Add(xt);
                    disposables.AddRange(weights);
                    disposables.AddRange(transposed);
                    variants.Add(Cycle(transposed, wt => { using var _ = xt.matmul(wt); }));
                    break;
                }
                case "openblas":
                    variants.Add(Cycle(sources, d =>
                    {
                        fixed (float* w = d, px = x, py = y) OpenBlas.Linear(w, rows, cols, px, py, batch);
                    }));
                    break;
                case "onnxruntime":
                {
                    var sessions = sources.Select(d => new OrtLinear(d, rows, cols, batch, threads)).ToArray();
                    disposables.AddRange(sessions);
                    variants.Add(Cycle(sessions, s => s.Run()));
                    break;
                }
                case MklCsrBaseline:
                {
                    // MKL's CSR of the same matrices as our fp32 CSR copies (or of the dense sources when none was asked for).
                    int csr = Array.FindIndex(matrices, list => list[0].Format == MatrixFormat.Csr);
                    var mkl = (csr >= 0 ? matrices[csr].Cast<CsrMatrix>() : sources.Select(d => CsrMatrix.FromDense(d, rows, cols))).Select(m => new MklCsr(m)).ToArray();
                    disposables.AddRange(mkl);
                    MklCsr.Threads(threads);
                    variants.Add(Cycle(mkl, m =>
                    {
                        fixed (float* px = x, py = y) m.Multiply(px, py, batch);
                    }));
                    break;
                }
            }

        try
        {
            double[] times = Blocks([.. variants], rounds: 12, warmupMs: 50, blockMs: 20, stream, out double streamGBps);
            var ours = matrices.Select((list, f) =>
            {
                WeightMatrix m = list[0];
                string name = Name(m.Format);
                string kernel = m.Format == MatrixFormat.Dense ? (batch == 1 ? "dense-gemv" : "dense-gemm") : $"{name}-{(batch == 1 ? "spmv" : "spmm")}";
                return new Ours(kernel, name, times[f], m.StoredBytes, m.NonZeros, copies[f]);
            }).ToArray();
            return new Result(ours, baselines.Select((b, i) => (b, times[formats.Count + i])).ToArray(), streamGBps);
        }
        finally
        {
            foreach (var d in disposables) d.Dispose();
        }
    }

    /// <summary>
    /// Per variant, the median time of one call: rounds of blocks, the order rotating every round; each block runs its
    /// variant untimed for <paramref name="warmupMs"/>, then times single calls for <paramref name="blockMs"/> (at least 3).
    /// </summary>
    internal static double[] Blocks(Action[] variants, int rounds, double warmupMs, double blockMs, StreamingRead? stream, out double streamGBps)
    {
        var times = variants.Select(_ => new List<double>()).ToArray();
        var bandwidth = new List<double>();
        for (int round = 0; round < rounds; round++)
        {
            for (int k = 0; k < variants.Length; k++)
            {
                int v = (round + k) % variants.Length;
                var clock = System.Diagnostics.Stopwatch.StartNew();
                do variants[v](); while (clock.Elapsed.TotalMilliseconds < warmupMs);
                clock.Restart();
                for (int calls = 0; calls < 3 || clock.Elapsed.TotalMilliseconds < blockMs; calls++) times[v].Add(QuickMode.Time(variants[v]));
            }
            if (stream is not null) bandwidth.Add(stream.GBps());
        }
        streamGBps = bandwidth.Count > 0 ? QuickMode.Median(bandwidth) : double.NaN;
        return times.Select(t => QuickMode.Median(t)).ToArray();
    }

    /// <summary>The last-level cache of CPU 0 as Linux reports it (32 MiB when it cannot be read).</summary>
    internal static long LastLevelCacheBytes()
    {
        long best = 0;
        foreach (string dir in Directory.Exists("/sys/devices/system/cpu/cpu0/cache") ? Directory.GetDirectories("/sys/devices/system/cpu/cpu0/cache", "index*") : [])
        {
            string file = Path.Combine(dir, "size");
            if (!File.Exists(file)) continue;
            string text = File.ReadAllText(file).Trim();
            long scale = text.EndsWith('K') ? 1024 : text.EndsWith('M') ? 1 << 20 : 1;
            if (long.TryParse(text.TrimEnd('K', 'M'), out long value)) best = Math.Max(best, value * scale);
        }
        return best > 0 ? best : 32L << 20;
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
