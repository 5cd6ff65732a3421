using CsCheck;
using Pruning.Sparse.Kernels;
using Pruning.Sparse.Matrices;

namespace Pruning.Sparse.Tests.Matrices;

public class WeightMatrixTests
{
    public static TheoryData<int, int, double> AwkwardShapes() => new()
    {
        { 1, 1, 0.0 }, { 1, 1, 1.0 }, { 1, 300, 0.9 }, { 300, 1, 0.5 }, { 17, 255, 0.9 }, { 9, 256, 0.8 }, { 33, 257, 0.95 },
        { 40, 64, 1.0 },     // all-zero matrix
        { 64, 33, 0.99 },    // mostly empty rows
    };

    [Theory]
    [MemberData(nameof(AwkwardShapes))]
    public void Csr_and_dense_kernels_match_the_reference_at_every_width_batch_and_thread_count(int rows, int cols, double sparsity)
    {
        float[] w = Reference.Sparse(rows, cols, sparsity, seed: rows * 31 + cols);
        float[] bias = Reference.Random(rows, 7);
        foreach (MatrixFormat format in new[] { MatrixFormat.Csr, MatrixFormat.Dense })
            WeightMatrix.FromDense(w, rows, cols, format).ShouldMatchAtEveryWidth(w, bias);
    }

    [Fact]
    public void An_empty_row_outputs_exactly_its_bias()
    {
        var w = new float[3 * 4];
        w[0] = 2; w[11] = -1;             // row 1 has no entries
        var m = CsrMatrix.FromDense(w, 3, 4);
        m.RowPointers.ToArray().Should().Equal(0, 1, 1, 2);
        var y = new float[3];
        m.Multiply(new float[] { 1, 1, 1, 1 }, y, 1, new float[] { 0.5f, 0.25f, 0 });
        y.Should().Equal(2.5f, 0.25f, -1f);
    }

    [Theory]
    [InlineData(65_535, true)]
    [InlineData(65_536, true)]
    [InlineData(65_537, false)]
    public void Column_indices_are_uint16_up_to_65536_columns_and_int32_beyond(int cols, bool narrow)
    {
        const int rows = 3;
        var w = new float[(long)rows * cols];
        // Entries at the first and last columns, where a truncated index would land elsewhere.
        w[0] = 1; w[cols - 1] = 2; w[(long)cols + cols / 2] = 3; w[2L * cols + cols - 1] = 4;
        var m = CsrMatrix.FromDense(w, rows, cols);
        m.HasNarrowIndices.Should().Be(narrow);
        m.StoredBytes.Should().Be(4 * (4 + (narrow ? 2 : 4)) + 4 * 4);
        m.ToDense().Should().Equal(w);
        float[] x = Reference.Random(cols * 2L, 3);
        float[] expected = Reference.Multiply(w, rows, cols, x, 2);
        foreach (SimdLevel level in Reference.Levels)
            foreach (int batch in new[] { 1, 2 })
            {
                float[] input = batch == 1 ? Enumerable.Range(0, cols).Select(k => x[2 * k]).ToArray() : x;
                var y = new float[rows * batch];
                m.Multiply(input, y, batch, default, 0, level);
                y.ShouldMatch(batch == 1 ? Enumerable.Range(0, rows).Select(r => expected[2 * r]).ToArray() : expected);
            }
    }

    [Fact]
    public void Csr_stores_six_bytes_per_non_zero_plus_row_pointers_at_90_percent()
    {
        var m = CsrMatrix.FromDense(Reference.Sparse(512, 512, 0.9, 1), 512, 512);
        ((double)m.StoredBytes / m.NonZeros).Should().BeLessThan(6.1);
        m.Sparsity.Should().BeApproximately(0.9, 0.01);
    }

    [Fact]
    public void Auto_format_takes_csr_only_when_sparse_enough()
    {
        WeightMatrix.FromDense(Reference.Sparse(64, 64, 0.9, 1), 64, 64).Format.Should().Be(MatrixFormat.Csr);
        WeightMatrix.FromDense(Reference.Sparse(64, 64, 0.5, 1), 64, 64).Format.Should().Be(MatrixFormat.Dense);
        WeightMatrix.FromDense(Reference.Sparse(64, 64, 0.65, 1), 64, 64).Format.Should().Be(MatrixFormat.Csr);
    }

    [Fact]
    public void Random_matrices_match_the_reference_property()
    {
        Gen.Select(Gen.Int[1, 40], Gen.Int[1, 70], Gen.Double[0, 1], Gen.Int[1, 40], Gen.Int[0, 1000])
            .Sample((rows, cols, sparsity, batch, seed) =>
            {
                float[] w = Reference.Sparse(rows, cols, sparsity, seed);
                float[] x = Reference.Random((long)cols * batch, seed + 1);
                float[] expected = Reference.Multiply(w, rows, cols, x, batch);
                foreach (SimdLevel level in Reference.Levels)
                {
                    var y = new float[rows * batch];
                    CsrMatrix.FromDense(w, rows, cols).Multiply(x, y, batch, default, 2, level);
                    y.ShouldMatch(expected);
                }
            }, iter: 300);
    }

    [Fact]
    public void Create_checks_every_csr_invariant()
    {
        Action unsorted = () => CsrMatrix.Create(1, 4, [0, 2], new[] { 2, 1 }, [1f, 1f]);
        unsorted.Should().Throw<ArgumentException>().WithMessage("*strictly increasing*");
        Action outOfRange = () => CsrMatrix.Create(1, 4, [0, 1], new[] { 4 }, [1f]);
        outOfRange.Should().Throw<ArgumentException>().WithMessage("*Column index 4*outside [0, 4)*");
        Action decreasing = () => CsrMatrix.Create(2, 4, [0, 2, 1], new[] { 0, 1 }, [1f, 1f]);
        decreasing.Should().Throw<ArgumentException>().WithMessage("*last row pointer*");
        Action badStart = () => CsrMatrix.Create(1, 4, [1, 1], new int[0], new float[0]);
        badStart.Should().Throw<ArgumentException>().WithMessage("*start at 0*");
        Action wide16 = () => CsrMatrix.Owning(1, 70_000, [0, 0], new ushort[0], new CsrMatrix.StoredValues(new float[0], null, null, null));
        wide16.Should().Throw<ArgumentOutOfRangeException>().WithParameterName("cols");
    }

    [Fact]
    public void Multiply_names_the_argument_with_the_wrong_length()
    {
        var m = CsrMatrix.FromDense(new float[] { 1, 0, 0, 1 }, 2, 2);
        m.Invoking(a => a.Multiply(new float[3], new float[2])).Should().Throw<ArgumentException>().WithParameterName("x");
        m.Invoking(a => a.Multiply(new float[2], new float[3])).Should().Throw<ArgumentException>().WithParameterName("y");
        m.Invoking(a => a.Multiply(new float[2], new float[2], bias: new float[3])).Should().Throw<ArgumentException>().WithParameterName("bias");
        m.Invoking(a => a.Multiply(new float[2], new float[2], batch: 0)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("batch");
    }

    [Fact]
    public void Rows_are_split_by_equal_non_zero_counts()
    {
        // Row 0 holds 90 non-zeros, rows 1-9 hold 1 each: two threads must split after row 0, not in the middle.
        int[] rowPointers = [0, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99];
        Parallelism.SplitByNonZeros(rowPointers, 2).Should().Equal(0, 1, 10);
        Parallelism.SplitByNonZeros([0, 0, 0, 0, 0], 2).Should().Equal(0, 2, 4);
    }

    [Fact]
    public void Several_threads_share_more_parts_than_threads_so_a_late_worker_costs_little()
    {
        Parallelism.Chunks(1, 4096).Should().Be(1);
        Parallelism.Chunks(2, 4096).Should().Be(2 * Parallelism.ChunksPerThread);
        Parallelism.Chunks(2, 3).Should().Be(3);   // never more parts than rows
        Parallelism.Chunks(3, 0).Should().Be(1);
    }
}
