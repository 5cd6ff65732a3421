using Pruning.Sparse.Kernels;

namespace Pruning.Sparse.Tests;

/// <summary>Plain double-precision references and seeded random data.</summary>
internal static class Reference
{
    public static readonly SimdLevel[] Levels = Enum.GetValues<SimdLevel>();

    /// <summary>y[r, b] = bias[r] + Σ_k W[r, k]·x[k, b] (feature-major x and y), in double.</summary>
    public static float[] Multiply(float[] w, int rows, int cols, float[] x, int batch, float[]? bias = null)
    {
        var y = new float[rows * batch];
        for (int r = 0; r < rows; r++)
            for (int b = 0; b < batch; b++)
            {
                double s = bias?[r] ?? 0;
                for (int k = 0; k < cols; k++) s += (double)w[(long)r * cols + k] * x[(long)k * batch + b];
                y[r * batch + b] = (float)s;
            }
        return y;
    }

    /// <summary>
    /// Asserts that <paramref name="matrix"/> computes <paramref name="dense"/>·x + bias like the double reference at the
    /// batch sizes the kernels treat differently (1, under and over a vector, odd tails), every SIMD level and 1–3 threads.
    /// </summary>
    public static void ShouldMatchAtEveryWidth(this Pruning.Sparse.Matrices.WeightMatrix matrix, float[] dense, float[] bias)
    {
        int rows = matrix.Rows, cols = matrix.Cols;
        foreach (int batch in new[] { 1, 2, 7, 8, 13, 16, 33, 64, 130 })
        {
            float[] x = Random((long)cols * batch, batch);
            float[] expected = Multiply(dense, rows, cols, x, batch, bias);
            foreach (SimdLevel level in Levels)
                foreach (int threads in new[] { 1, 2, 3 })
                {
                    var y = new float[rows * batch];
                    matrix.Multiply(x, y, batch, bias, threads, level);
                    y.ShouldMatch(expected);
                }
        }
    }

    /// <summary>A [rows, cols] matrix with the given fraction of exact zeros.</summary>
    public static float[] Sparse(int rows, int cols, double sparsity, int seed)
    {
        var random = new Random(seed);
        var w = new float[(long)rows * cols];
        for (long i = 0; i < w.Length; i++) w[i] = random.NextDouble() < sparsity ? 0f : (float)(random.NextDouble() * 2 - 1);
        return w;
    }

    public static float[] Random(long count, int seed)
    {
        var random = new Random(seed);
        var x = new float[count];
        for (long i = 0; i < count; i++) x[i] = (float)(random.NextDouble() * 2 - 1);
        return x;
    }

    /// <summary>Asserts |a − e| ≤ tolerance·(1 + |e|) element-wise, naming the first index that differs.</summary>
    public static void ShouldMatch(this float[] actual, float[] expected, double tolerance = 1e-4)
    {
        actual.Length.Should().Be(expected.Length);
        for (int i = 0; i < actual.Length; i++)
            if (!(Math.Abs(actual[i] - expected[i]) <= tolerance * (1 + Math.Abs(expected[i]))))
                actual[i].Should().BeApproximately(expected[i], (float)(tolerance * (1 + Math.Abs(expected[i]))), $"element {i} of {actual.Length}");
    }
}
