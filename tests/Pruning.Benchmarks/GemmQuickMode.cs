using System.Globalization;
using Pruning.Benchmarks.Baselines;
using Pruning.Sparse.Kernels;
using Pruning.Sparse.Matrices;

namespace Pruning.Benchmarks;

/// <summary>
/// <c>-- quick --gemm [--threads T] [--json]</c>: the dense product y[M, N] = W[M, K]·x[K, N] by our blocked GEMM (packed
/// weights, packed column panels, register-blocked micro-kernel), by our row-blocked kernel (what dense layers ran
/// before), by OpenBLAS's sgemm and by ONNX Runtime's Gemm (a Linear with prepacked weights; batch-major, the same
/// multiply-adds), interleaved in blocks in one process, medians after warm-up; GFLOP/s. The shapes: 4096² × 64 and × 512, and
/// the im2col products of TorchVision resnet18's convolutions at 224×224, batch 1 (N = output pixels) and batch 64.
/// </summary>
internal static class GemmQuickMode
{
    public static bool Wants(string[] args) => args.Contains("--gemm");

    public static unsafe void Run(string[] args)
    {
        int i = Array.IndexOf(args, "--threads");
        int threads = i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : Environment.ProcessorCount;
        bool json = args.Contains("--json");
        if (OpenBlas.Available) OpenBlas.Threads(threads);
        var shapes = new List<(string Name, int M, int K, int N)> { ("4096x4096 n64", 4096, 4096, 64), ("4096x4096 n512", 4096, 4096, 512) };
        foreach (int batch in new[] { 1, 64 })
        {
            shapes.Add(($"resnet18 conv1 7x7 b{batch}", 64, 147, 112 * 112 * batch));
            shapes.Add(($"resnet18 layer1 3x3 b{batch}", 64, 576, 56 * 56 * batch));
            shapes.Add(($"resnet18 layer2 3x3 b{batch}", 128, 1152, 28 * 28 * batch));
            shapes.Add(($"resnet18 layer2 1x1 b{batch}", 128, 64, 28 * 28 * batch));
            shapes.Add(($"resnet18 layer3 3x3 b{batch}", 256, 2304, 14 * 14 * batch));
            shapes.Add(($"resnet18 layer4 3x3 b{batch}", 512, 4608, 7 * 7 * batch));
        }
        foreach (var (name, m, k, n) in shapes)
        {
            float[] w = Random((long)m * k, 1), x = Random((long)k * n, 2), y = new float[(long)m * n];
            var dense = new DenseMatrix(w, m, k);
            var packed = new PackedWeights(w, m, k);
            SimdLevel level = SimdSupport.Best;
            using var ort = new OrtLinear(w, m, k, n, threads);
            var actions = new List<(string Name, Action Run)>();
            actions.Add(("ours_gemm", () => { fixed (float* px = x, py = y) Gemm.Multiply(level, packed, px, py, null, n, threads); }));
            if (threads > 1) actions.Add(("ours_gemm_1thread", () => { fixed (float* px = x, py = y) Gemm.Multiply(level, packed, px, py, null, n, 1); }));
            actions.Add(("ours_rows", () => { fixed (float* px = x, py = y) dense.MultiplyByRows(px, py, null, n, threads, level); }));
            if (OpenBlas.Available) actions.Add(("openblas", () => { fixed (float* pw = w, px = x, py = y) OpenBlas.Gemm(pw, px, py, m, n, k); }));
            actions.Add(("onnxruntime", ort.Run));
            double flops = 2.0 * m * k * n;
            int runs = (int)Math.Clamp(2e10 / flops, 3, 200);
            foreach (var a in actions) a.Run();
            var times = actions.Select(_ => new List<double>()).ToArray();
            // Interleaved blocks: a 20 ms pause (another engine's threads spin on the cores for a while after a call:
            // ONNX Runtime's, OpenBLAS's, our pool's), each variant once untimed, then three timed runs.
            for (int r = 0; r < (runs + 2) / 3; r++)
                for (int a = 0; a < actions.Count; a++)
                {
                    Thread.Sleep(20);
                    actions[a].Run();
                    for (int t = 0; t < 3; t++) times[a].Add(QuickMode.Time(actions[a].Run));
                }
            double[] medians = times.Select(QuickMode.Median).ToArray();
            string Gflops(int a) => (flops / medians[a] / 1e6).ToString("F1", CultureInfo.InvariantCulture);
            if (json)
            {
                string fields = string.Join(",", actions.Select((a, j) => FormattableString.Invariant($"\"{a.Name}_ms\":{medians[j]:F4},\"{a.Name}_gflops\":{Gflops(j)}")));
                Console.WriteLine(FormattableString.Invariant($"{{\"kernel\":\"gemm\",\"shape\":\"{name}\",\"m\":{m},\"k\":{k},\"n\":{n},\"threads\":{threads},\"simd\":\"{level}\",{fields}}}"));
            }
            else
            {
                Console.WriteLine($"{name,-26} M {m,5} K {k,5} N {n,7}: " + string.Join("  ", actions.Select((a, j) => $"{a.Name} {Gflops(j),6} GFLOP/s")));
            }
        }
    }

    private static float[] Random(long count, int seed)
    {
        var random = new Random(seed);
        var v = new float[count];
        for (long j = 0; j < count; j++) v[j] = (float)(random.NextDouble() * 2 - 1);
        return v;
    }
}
