using Pruning.Sparse.Kernels;

namespace Pruning.Sparse.Tests.Kernels;

public class TranspositionTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(7, 9)]
    [InlineData(8, 8)]
    [InlineData(17, 8)]
    [InlineData(8, 23)]
    [InlineData(100, 64)]
    [InlineData(10_000, 3)]
    public void Both_paths_transpose_blocks_with_pitches_exactly(int rows, int cols)
    {
        // A [rows, cols] block inside a wider source (pitch cols + 5), written into a wider destination (pitch rows + 3).
        long srcPitch = cols + 5, dstPitch = rows + 3;
        float[] source = Reference.Random((int)((rows - 1) * srcPitch + cols), rows * 31 + cols);
        foreach (bool vector in new[] { false, true })
        {
            var destination = new float[(cols - 1) * dstPitch + rows];
            Array.Fill(destination, float.NaN);
            Transposition.Transpose(source, rows, cols, srcPitch, destination, dstPitch, vector);
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++)
                    destination[c * dstPitch + r].Should().Be(source[r * srcPitch + c], $"({r}, {c}) on the {(vector ? "vector" : "scalar")} path");
        }
    }

    [Fact]
    public void A_contiguous_column_is_copied_as_it_is()
    {
        float[] column = Reference.Random(1000, 5);
        var row = new float[1000];
        Transposition.Transpose(column, 1000, 1, 1, row, 1000);
        row.Should().Equal(column);
    }
}
