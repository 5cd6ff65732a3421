using BenchmarkDotNet.Attributes;
using Pruning.Sparse.Matrices;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Benchmarks;

/// <summary>
/// The matrix: 4096×4096, uniformly random sparsity, batch 1 and 64, on every core. TorchSharp's dense
/// matmul is the baseline; our dense kernel (the fallback) and the CSR kernel are measured on the same matrix.
/// </summary>
public class SparseKernelBenchmarks
{
    private const int Size = 4096;
    private WeightMatrix _csr = null!, _dense = null!;
    private float[] _x = null!, _y = null!;
    private Tensor _xt = null!, _wt = null!;

    [Params(0.5, 0.9)]
    public double Sparsity { get; set; }

    [Params(1, 64)]
    public int Batch { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        torch.set_num_threads(Environment.ProcessorCount);
        var random = new Random(42);
        var w = new float[Size * Size];
        for (int i = 0; i < w.Length; i++) w[i] = random.NextDouble() < Sparsity ? 0f : (float)(random.NextDouble() * 2 - 1);
        _csr = WeightMatrix.FromDense(w, Size, Size, MatrixFormat.Csr);
        _dense = WeightMatrix.FromDense(w, Size, Size, MatrixFormat.Dense);
        _x = new float[Size * Batch];
        for (int i = 0; i < _x.Length; i++) _x[i] = (float)(random.NextDouble() * 2 - 1);
        _y = new float[Size * Batch];
        _wt = torch.tensor(w, [Size, Size]).t();
        _xt = torch.tensor(_x, [Size, Batch]).t().contiguous();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _wt.Dispose();
        _xt.Dispose();
    }

    /// <summary>TorchSharp: x [batch, 4096] · Wᵀ.</summary>
    [Benchmark(Baseline = true)]
    public void TorchSharpDense()
    {
        using var y = _xt.matmul(_wt);
    }

    /// <summary>Our CSR kernel (SpMV at batch 1, SpMM otherwise).</summary>
    [Benchmark]
    public void Csr() => _csr.Multiply(_x, _y, Batch);

    /// <summary>Our dense kernel, the fallback for low sparsity.</summary>
    [Benchmark]
    public void DenseFallback() => _dense.Multiply(_x, _y, Batch);
}
