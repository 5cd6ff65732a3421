using System.Globalization;
using Pruning.Sparse;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Benchmarks;

/// <summary>
/// <c>-- quick --conv [--threads T] [--json]</c>: one Conv2d layer on our runtime by im2col + CSR, by direct sparse
/// convolution, and by im2col + our dense kernel, against TorchSharp's conv2d on the same filters, interleaved in one
/// process; medians after warm-up. The grid is the Fashion-MNIST CNNs' layer shapes at 0 and 50–95 % sparsity, batch 1 and 16.
/// </summary>
internal static class ConvQuickMode
{
    public static bool Wants(string[] args) => args.Contains("--conv");

    public static void Run(string[] args)
    {
        int i = Array.IndexOf(args, "--threads");
        int threads = i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : Environment.ProcessorCount;
        bool json = args.Contains("--json");
        torch.set_num_threads(threads);
        var layers = new (int In, int Out, int Size, int Kernel, int Padding)[] { (1, 32, 28, 3, 1), (32, 64, 14, 3, 1), (64, 128, 7, 3, 1), (16, 32, 28, 5, 2) };
        foreach (var (cin, cout, size, k, pad) in layers)
            foreach (double sparsity in new[] { 0.0, 0.5, 0.75, 0.9, 0.95 })
                foreach (int batch in new[] { 1, 16 })
                {
                    var m = Measure(cin, cout, size, k, pad, sparsity, batch, threads);
                    string line = FormattableString.Invariant(
                        $"{{\"kernel\":\"conv2d\",\"in\":{cin},\"out\":{cout},\"size\":{size},\"k\":{k},\"sparsity\":{sparsity},\"batch\":{batch},\"threads\":{threads},\"im2col_csr_ms\":{m.Im2ColCsr:F4},\"direct_csr_ms\":{m.DirectCsr:F4},\"im2col_dense_ms\":{m.Im2ColDense:F4},\"torch_ms\":{m.Torch:F4},\"direct_vs_im2col\":{m.Im2ColCsr / m.DirectCsr:F3}}}");
                    Console.WriteLine(json ? line : FormattableString.Invariant(
                        $"{cin,3}→{cout,-3} {size,2}² k{k} {sparsity,5:P0} b{batch,-2}: im2col+CSR {m.Im2ColCsr,8:F3} ms  direct {m.DirectCsr,8:F3} ms ({m.Im2ColCsr / m.DirectCsr:F2}×)  im2col+dense {m.Im2ColDense,8:F3} ms  TorchSharp {m.Torch,8:F3} ms"));
                }
    }

    internal readonly record struct Result(double Im2ColCsr, double DirectCsr, double Im2ColDense, double Torch);

    internal static Result Measure(int cin, int cout, int size, int k, int pad, double sparsity, int batch, int threads)
    {
        var random = new Random(7);
        int cols = cin * k * k;
        var w = new float[cout * cols];
        for (int j = 0; j < w.Length; j++) w[j] = random.NextDouble() < sparsity ? 0f : (float)(random.NextDouble() * 2 - 1);
        var bias = new float[cout];
        var x = new float[batch * cin * size * size];
        for (int j = 0; j < x.Length; j++) x[j] = (float)(random.NextDouble() * 2 - 1);
        var shape = new FeatureShape(cin, size, size);
        SparseModel Model(WeightMatrix m, ConvAlgorithm a) => new(shape, [new Conv2dLayer(m, bias, cin, (k, k), padding: (pad, pad), algorithm: a)]);
        SparseModel im2colCsr = Model(CsrMatrix.FromDense(w, cout, cols), ConvAlgorithm.Im2Col);
        SparseModel direct = Model(CsrMatrix.FromDense(w, cout, cols), ConvAlgorithm.Direct);
        SparseModel im2colDense = Model(new DenseMatrix(w, cout, cols), ConvAlgorithm.Im2Col);
        var y = new float[batch * im2colCsr.OutputShape.Size];

        using var wt = torch.tensor(w, [cout, cin, k, k]);
        using var bt = torch.tensor(bias);
        using var xt = torch.tensor(x, [batch, cin, size, size]);
        Action[] actions =
        [
            () => im2colCsr.Run(x, y, batch, threads),
            () => direct.Run(x, y, batch, threads),
            () => im2colDense.Run(x, y, batch, threads),
            () => { using var _ = torch.nn.functional.conv2d(xt, wt, bt, padding: [pad, pad]); },
        ];
        double budget = 4e8 / ((double)cout * cols * size * size * batch);
        int runs = (int)Math.Clamp(budget, 15, 300);
        foreach (Action a in actions) for (int r = 0; r < 5; r++) a();
        var times = actions.Select(_ => new List<double>()).ToArray();
        for (int r = 0; r < runs; r++)
            for (int a = 0; a < actions.Length; a++) times[a].Add(QuickMode.Time(actions[a]));
        return new Result(QuickMode.Median(times[0]), QuickMode.Median(times[1]), QuickMode.Median(times[2]), QuickMode.Median(times[3]));
    }
}
