using System.Runtime.Intrinsics;
using Pruning.Sparse.Kernels;
using Pruning.Sparse.Matrices;

namespace Pruning.Sparse.Tests.Matrices;

/// <summary>CSR with half and int8 values: the kernels against the double reference of the decoded matrix, and the rounding bounds.</summary>
public class CompressedCsrTests
{
    public static readonly MatrixFormat[] Compressed = [MatrixFormat.CsrFloat16, MatrixFormat.CsrInt8];

    public static TheoryData<MatrixFormat, int, int, double> AwkwardShapes()
    {
        var data = new TheoryData<MatrixFormat, int, int, double>();
        foreach (MatrixFormat format in Compressed)
            foreach (var (rows, cols, sparsity) in new[] { (1, 1, 0.0), (1, 1, 1.0), (1, 300, 0.9), (300, 1, 0.5), (17, 255, 0.9), (9, 256, 0.8), (33, 257, 0.95), (40, 64, 1.0), (64, 33, 0.99) })
                data.Add(format, rows, cols, sparsity);
        return data;
    }

    [Theory]
    [MemberData(nameof(AwkwardShapes))]
    public void Kernels_match_the_reference_of_the_decoded_matrix_at_every_width_batch_and_thread_count(MatrixFormat format, int rows, int cols, double sparsity)
    {
        float[] w = Reference.Sparse(rows, cols, sparsity, seed: rows * 31 + cols);
        float[] bias = Reference.Random(rows, 7);
        var m = CsrMatrix.Compress(w, rows, cols, format);
        m.Format.Should().Be(format);
        m.NonZeros.Should().Be(w.Count(v => v != 0), "the structure is kept: no entry is dropped or added");
        m.ShouldMatchAtEveryWidth(m.ToDense(), bias);
    }

    [Theory]
    [InlineData(MatrixFormat.CsrFloat16, 65_535, true)]
    [InlineData(MatrixFormat.CsrFloat16, 65_536, true)]
    [InlineData(MatrixFormat.CsrFloat16, 65_537, false)]
    [InlineData(MatrixFormat.CsrInt8, 65_535, true)]
    [InlineData(MatrixFormat.CsrInt8, 65_536, true)]
    [InlineData(MatrixFormat.CsrInt8, 65_537, false)]
    public void Wide_matrices_use_the_right_index_width_and_still_match(MatrixFormat format, int cols, bool narrow)
    {
        const int rows = 3;
        var w = new float[(long)rows * cols];
        w[0] = -2; w[cols - 1] = 2; w[(long)cols + cols / 2] = 3; w[2L * cols + cols - 1] = 4; w[2L * cols] = -4;
        var m = CsrMatrix.Compress(w, rows, cols, format);
        m.HasNarrowIndices.Should().Be(narrow);
        int valueBytes = format == MatrixFormat.CsrFloat16 ? 2 : 1, scales = format == MatrixFormat.CsrInt8 ? rows * 4 : 0;
        m.StoredBytes.Should().Be(5 * (valueBytes + (narrow ? 2 : 4)) + 4 * 4 + scales);
        float[] decoded = m.ToDense();
        decoded.Should().Equal(w, "these values are exact in both encodings (each row's largest maps to ±127)");
        float[] x = Reference.Random(cols * 2L, 3);
        foreach (SimdLevel level in Reference.Levels)
            foreach (int batch in new[] { 1, 2 })
            {
                float[] input = batch == 1 ? x[..cols] : x;
                var y = new float[rows * batch];
                m.Multiply(input, y, batch, default, 0, level);
                y.ShouldMatch(Reference.Multiply(decoded, rows, cols, input, batch));
            }
    }

    [Fact]
    public void The_vector_half_decoder_equals_dot_nets_conversion_for_every_finite_half()
    {
        if (!SimdSupport.HasGather) return;   // the vector decode is the AVX2 path; the scalar one is checked below either way
        var bits = new ushort[65_536 + 8];
        int count = 0;
        for (int h = 0; h < 65_536; h++)
            if ((h & 0x7c00) != 0x7c00) bits[count++] = (ushort)h;
        unsafe
        {
            fixed (ushort* p = bits)
            {
                var values = new Float16Values(p);
                for (int j = 0; j < count; j += 8)
                {
                    Vector256<float> v = values.Load8(j);
                    for (int k = 0; k < 8 && j + k < count; k++)
                    {
                        float expected = (float)BitConverter.UInt16BitsToHalf(bits[j + k]);
                        BitConverter.SingleToInt32Bits(v[k]).Should().Be(BitConverter.SingleToInt32Bits(expected), $"half 0x{bits[j + k]:x4}");
                        BitConverter.SingleToInt32Bits(values.At(j + k)).Should().Be(BitConverter.SingleToInt32Bits(expected), $"half 0x{bits[j + k]:x4} (scalar)");
                    }
                }
            }
        }
    }

    [Fact]
    public void Half_rounding_is_within_its_stated_bound()
    {
        var random = new Random(3);
        float[] w = Enumerable.Range(0, 4096).Select(_ => (float)((random.NextDouble() * 2 - 1) * Math.Pow(10, random.Next(-9, 5)))).ToArray();
        float[] decoded = CsrMatrix.Compress(w, 64, 64, MatrixFormat.CsrFloat16).ToDense();
        for (int i = 0; i < w.Length; i++)
        {
            double error = Math.Abs(decoded[i] - (double)w[i]);
            double bound = Math.Abs(w[i]) >= Math.Pow(2, -14) ? Math.Pow(2, -11) * Math.Abs(w[i]) : Math.Pow(2, -25);
            error.Should().BeLessThanOrEqualTo(bound, $"w = {w[i]:R}");
        }
        decoded.Count(v => v == 0).Should().BeGreaterThan(0, "values below 2⁻²⁵ round to zero, and the test includes some");
    }

    [Fact]
    public void Int8_rounding_is_within_half_a_step_of_each_rows_scale()
    {
        const int rows = 32, cols = 100;
        float[] w = Reference.Sparse(rows, cols, 0.7, 11);
        for (int i = 0; i < w.Length; i++) w[i] *= (i / cols + 1) * 0.37f;   // a different range per row
        var m = CsrMatrix.Compress(w, rows, cols, MatrixFormat.CsrInt8);
        float[] decoded = m.ToDense();
        for (int r = 0; r < rows; r++)
        {
            double max = Enumerable.Range(0, cols).Max(c => Math.Abs(w[r * cols + c]));
            double step = max / 127;
            for (int c = 0; c < cols; c++)
                Math.Abs(decoded[r * cols + c] - (double)w[r * cols + c]).Should().BeLessThanOrEqualTo(step / 2 * (1 + 1e-5) + 1e-9, $"row {r}, column {c}");
            Enumerable.Range(0, cols).Max(c => (double)Math.Abs(decoded[r * cols + c])).Should().BeApproximately(max, max * 1e-6, "each row's largest weight is ±127 steps");
        }
    }

    [Fact]
    public void Bytes_per_non_zero_at_90_percent_are_six_four_and_three()
    {
        float[] w = Reference.Sparse(512, 512, 0.9, 1);
        double PerNonZero(MatrixFormat f) { var m = CsrMatrix.Compress(w, 512, 512, f); return (double)m.StoredBytes / m.NonZeros; }
        PerNonZero(MatrixFormat.Csr).Should().BeInRange(6, 6.1);
        PerNonZero(MatrixFormat.CsrFloat16).Should().BeInRange(4, 4.1);
        PerNonZero(MatrixFormat.CsrInt8).Should().BeInRange(3, 3.2, "plus a row pointer and a scale per ~51 non-zeros");
    }

    [Fact]
    public void Values_that_cannot_be_encoded_are_refused_naming_them()
    {
        FluentActions.Invoking(() => CsrMatrix.Compress([1f, 70_000f], 1, 2, MatrixFormat.CsrFloat16)).Should().Throw<ArgumentException>()
            .WithMessage("*70000*half*").WithParameterName("dense");
        FluentActions.Invoking(() => CsrMatrix.Compress([float.NaN, 1f], 1, 2, MatrixFormat.CsrInt8)).Should().Throw<ArgumentException>()
            .WithMessage("*NaN*not finite*");
        FluentActions.Invoking(() => CsrMatrix.Compress([1f], 1, 1, MatrixFormat.Dense)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("format");
        var half = CsrMatrix.Compress([1f, 0f], 1, 2, MatrixFormat.CsrFloat16);
        half.Invoking(m => m.Values.Length).Should().Throw<InvalidOperationException>().WithMessage("*CsrFloat16*ValueAt*");
        half.ValueAt(0, 0).Should().Be(1f);
    }

    [Fact]
    public void Auto_never_rounds_a_weight()
    {
        WeightMatrix.FromDense(Reference.Sparse(64, 64, 0.99, 1), 64, 64).Format.Should().Be(MatrixFormat.Csr);
    }
}
