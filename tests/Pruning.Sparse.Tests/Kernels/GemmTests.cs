using Pruning.Sparse.Kernels;

namespace Pruning.Sparse.Tests.Kernels;

/// <summary>The blocked dense product against the double-precision reference, across every edge its blocking has.</summary>
public class GemmTests
{
    public static TheoryData<int, int, int> Shapes() => new()
    {
        { 1, 1, 16 },          // one row, one input: a tile of one valid row
        { 6, 8, 32 },          // exactly one panel of rows, one vector pair of columns at 512 bits
        { 7, 5, 17 },          // one panel: a whole 6-row half and a half with one row; a column tail
        { 13, 9, 40 },         // a second panel with one row
        { 24, 33, 64 },        // two whole panels
        { 13, 256, 47 },       // one whole depth block
        { 11, 257, 100 },      // a second depth block of one input
        { 64, 600, 513 },      // three depth blocks, a column block and one more column
        { 5, 3, 1100 },        // fewer rows than a panel, three column blocks
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public unsafe void The_product_equals_the_double_reference_at_every_width_and_thread_count(int rows, int cols, int n)
    {
        float[] w = Reference.Random((long)rows * cols, rows + cols), x = Reference.Random((long)cols * n, n), bias = Reference.Random(rows, 3);
        var packed = new PackedWeights(w, rows, cols);
        foreach (bool withBias in new[] { true, false })
        {
            float[] expected = Reference.Multiply(w, rows, cols, x, n, withBias ? bias : null);
            foreach (SimdLevel level in Reference.Levels)
                foreach (int threads in new[] { 1, 2, 3 })
                {
                    var y = new float[rows * n];
                    Array.Fill(y, float.NaN);   // every element must be written, none read before
                    fixed (float* px = x, py = y, pb = bias)
                        Gemm.Multiply(level, packed, px, py, withBias ? pb : null, n, threads);
                    y.ShouldMatch(expected, tolerance: 1e-4 * Math.Sqrt(cols));
                }
        }
    }

    [Fact]
    public void Packing_puts_each_panels_rows_side_by_side_per_input_and_zero_fills_the_last_panel()
    {
        // 13 × 2: rows r hold (10r, 10r + 1); panel 0 rows 0–11, panel 1 row 12 and eleven zero rows.
        float[] w = Enumerable.Range(0, 13).SelectMany(r => new[] { 10f * r, 10f * r + 1 }).ToArray();
        var packed = new PackedWeights(w, 13, 2);
        packed.Panels.Should().Be(2);
        float[] Panel0(int k) => Enumerable.Range(0, 12).Select(r => 10f * r + k).ToArray();
        float[] Panel1(int k) => [120f + k, .. new float[11]];
        packed.Values.Should().Equal([.. Panel0(0), .. Panel0(1), .. Panel1(0), .. Panel1(1)]);
    }

    [Fact]
    public void A_dense_matrix_gives_the_same_through_the_blocked_product_as_through_the_row_kernel()
    {
        const int rows = 37, cols = 300;
        float[] w = Reference.Random(rows * cols, 9), bias = Reference.Random(rows, 10);
        var matrix = Pruning.Sparse.Matrices.WeightMatrix.FromDense(w, rows, cols, Pruning.Sparse.Matrices.MatrixFormat.Dense);
        matrix.ShouldMatchAtEveryWidth(w, bias);
    }
}
