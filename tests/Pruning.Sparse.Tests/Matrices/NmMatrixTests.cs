using Pruning.Sparse.Kernels;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Serialization;
using Pruning.Sparse.Tests.Serialization;

namespace Pruning.Sparse.Tests.Matrices;

public class NmMatrixTests
{
    /// <summary>An N:M sparse matrix: in every group of M inputs, N (or, with probability <paramref name="emptier"/>, fewer) random non-zeros.</summary>
    private static float[] NofM(int rows, int cols, (int N, int M) pattern, int seed, double emptier = 0.2)
    {
        var random = new Random(seed);
        var w = new float[(long)rows * cols];
        for (long g = 0; g < w.Length / pattern.M; g++)
        {
            int keep = random.NextDouble() < emptier ? random.Next(pattern.N) : pattern.N;
            foreach (int k in Enumerable.Range(0, pattern.M).OrderBy(_ => random.Next()).Take(keep))
                w[g * pattern.M + k] = (float)(random.NextDouble() * 2 - 1);
        }
        return w;
    }

    public static TheoryData<int, int, int, int> Shapes()
    {
        var data = new TheoryData<int, int, int, int>();
        foreach (var (n, m) in NmMatrix.Patterns)
            foreach (var (rows, cols) in new[] { (1, 8), (1, 16), (3, 32), (17, 256), (9, 264), (40, 1024), (5, 8 * 33) })
                data.Add(n, m, rows, cols);
        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Kernels_match_the_reference_at_every_width_batch_and_thread_count(int n, int m, int rows, int cols)
    {
        float[] w = NofM(rows, cols, (n, m), rows * 13 + cols);
        float[] bias = Reference.Random(rows, 5);
        var matrix = NmMatrix.FromDense(w, rows, cols, (n, m));
        matrix.ToDense().Should().Equal(w);
        matrix.NonZeros.Should().Be(w.Count(v => v != 0));
        matrix.StoredEntries.Should().Be((long)rows * cols / m * n);
        matrix.ShouldMatchAtEveryWidth(w, bias);
    }

    [Theory]
    [InlineData(65_536)]
    [InlineData(65_544)]   // 8193 groups of 8, 16386 of 4: the 2:4 gather path's tail of groups runs scalar
    public void Wide_rows_match_the_reference(int cols)
    {
        foreach (var pattern in NmMatrix.Patterns)
        {
            float[] w = NofM(2, cols, pattern, cols);
            var matrix = NmMatrix.FromDense(w, 2, cols, pattern);
            float[] x = Reference.Random(cols, 1);
            foreach (SimdLevel level in Reference.Levels)
            {
                var y = new float[2];
                matrix.Multiply(x, y, 1, default, 1, level);
                y.ShouldMatch(Reference.Multiply(w, 2, cols, x, 1));
            }
        }
    }

    [Fact]
    public void Two_of_four_costs_four_and_a_half_bytes_per_stored_value()
    {
        float[] w = NofM(64, 512, (2, 4), 1, emptier: 0);
        var matrix = NmMatrix.FromDense(w, 64, 512, (2, 4));
        ((double)matrix.StoredBytes / matrix.NonZeros).Should().Be(4.5);
        ((double)CsrMatrix.FromDense(w, 64, 512).StoredBytes / matrix.NonZeros).Should().BeGreaterThan(6);
    }

    [Fact]
    public void A_matrix_that_is_not_n_of_m_sparse_is_refused_naming_the_group()
    {
        var w = new float[2 * 8];
        w[8] = 1; w[9] = 2; w[11] = 3;   // row 1, inputs 0-3: three non-zeros
        NmMatrix.Fits(w, 2, 8, (2, 4)).Should().BeFalse();
        NmMatrix.Fits(w, 2, 8, (4, 8)).Should().BeTrue();
        FluentActions.Invoking(() => NmMatrix.FromDense(w, 2, 8, (2, 4))).Should().Throw<ArgumentException>()
            .WithParameterName("dense").WithMessage("Row 1, inputs 0–3 hold more than 2 non-zeros*");
        FluentActions.Invoking(() => NmMatrix.FromDense(new float[6], 1, 6, (2, 4))).Should().Throw<ArgumentException>().WithParameterName("pattern");
        FluentActions.Invoking(() => NmMatrix.FromDense(new float[8], 1, 8, (1, 4))).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("pattern");
    }

    [Fact]
    public void An_n_of_m_model_round_trips_and_a_file_naming_a_position_twice_is_refused()
    {
        float[] w = NofM(4, 8, (2, 4), 3, emptier: 0);
        var model = new SparseModel(new FeatureShape(8), [new LinearLayer(NmMatrix.FromDense(w, 4, 8, (2, 4)), Reference.Random(4, 1))]);
        byte[] bytes = model.ToBytes();
        SparseModel loaded = SparseModel.Read(bytes);
        loaded.Describe().Should().Be(model.Describe()).And.Contain("2:4");
        float[] x = Reference.Random(2 * 8, 2);
        loaded.Run(x, 2).Should().Equal(model.Run(x, 2));

        // Header 12, input 12, layer count 4, layer tag 1, matrix tag 1, rows 4, cols 4, N 1, M 1: then the first position byte.
        const int firstWord = 12 + 12 + 4 + 1 + 1 + 8 + 2;
        bytes[firstWord - 11].Should().Be(10, "the matrix is stored as N:M");
        byte[] bad = (byte[])bytes.Clone();
        bad[firstWord] = 0b0101;   // positions 1 and 1
        FluentActions.Invoking(() => SparseModel.Read(FileMutations.WithChecksum(bad[..^4]), "twice.psm")).Should().Throw<SparseModelFormatException>()
            .WithMessage("'twice.psm'*names one position twice*");
        for (int length = 0; length < bytes.Length; length++)
            FluentActions.Invoking(() => SparseModel.Read(bytes.AsSpan(0, length), "cut.psm")).Should().Throw<SparseModelFormatException>();
    }
}
