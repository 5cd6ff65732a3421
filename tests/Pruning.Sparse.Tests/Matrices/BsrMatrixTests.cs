using Pruning.Sparse.Kernels;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Serialization;
using Pruning.Sparse.Tests.Serialization;

namespace Pruning.Sparse.Tests.Matrices;

public class BsrMatrixTests
{
    /// <summary>A [rows, cols] matrix whose zeros come in whole R×C blocks (a fraction <paramref name="sparsity"/> of them), as Blocks(r, c) prunes.</summary>
    private static float[] BlockSparse(int rows, int cols, (int R, int C) block, double sparsity, int seed)
    {
        var random = new Random(seed);
        float[] w = Reference.Random((long)rows * cols, seed + 1);
        for (int br = 0; br < rows / block.R; br++)
            for (int bc = 0; bc < cols / block.C; bc++)
                if (random.NextDouble() < sparsity)
                    for (int i = 0; i < block.R; i++)
                        for (int k = 0; k < block.C; k++) w[(br * block.R + i) * cols + bc * block.C + k] = 0;
        return w;
    }

    public static TheoryData<int, int, int, int, double, bool> Shapes()
    {
        var data = new TheoryData<int, int, int, int, double, bool>();
        foreach (var (r, c) in BsrMatrix.Shapes)
            foreach (var (rows, cols, sparsity) in new[] { (4, 4, 0.0), (4, 4, 1.0), (4, 256, 0.9), (8, 252, 0.8), (36, 260, 0.95), (260, 4, 0.5), (64, 64, 0.99) })
                foreach (bool blocked in new[] { true, false })
                    data.Add(r, c, rows, cols, sparsity, blocked);
        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Kernels_match_the_reference_at_every_width_batch_and_thread_count(int r, int c, int rows, int cols, double sparsity, bool blocked)
    {
        // Block-structured zeros (no fill-in), or unstructured ones (blocks stored with their zeros): both must be exact.
        float[] w = blocked ? BlockSparse(rows, cols, (r, c), sparsity, rows + cols) : Reference.Sparse(rows, cols, sparsity, rows * 7 + cols);
        float[] bias = Reference.Random(rows, 9);
        var m = BsrMatrix.FromDense(w, rows, cols, (r, c));
        m.ToDense().Should().Equal(w);
        m.NonZeros.Should().Be(w.Count(v => v != 0));
        if (blocked) m.StoredEntries.Should().Be(m.NonZeros, "block-structured zeros need no fill-in");
        m.ShouldMatchAtEveryWidth(w, bias);
    }

    [Theory]
    [InlineData(4 * 65_536, true)]
    [InlineData(4 * 65_537, false)]
    public void Block_column_indices_are_uint16_up_to_65536_block_columns(int cols, bool narrow)
    {
        var w = new float[4L * cols];
        w[0] = 1; w[cols - 1] = 2; w[3L * cols + cols - 4] = 3;
        var m = BsrMatrix.FromDense(w, 4, cols, (1, 4));
        m.Blocks.Should().Be(3);
        m.StoredBytes.Should().Be(3 * 16 + 3 * (narrow ? 2 : 4) + 5 * 4);
        float[] x = Reference.Random(cols, 2);
        foreach (SimdLevel level in Reference.Levels)
        {
            var y = new float[4];
            m.Multiply(x, y, 1, default, 1, level);
            y.ShouldMatch(Reference.Multiply(w, 4, cols, x, 1));
        }
        var loaded = (BsrMatrix)((LinearLayer)SparseModel.Read(new SparseModel(new FeatureShape(cols), [new LinearLayer(m, default)]).ToBytes()).Layers[0]).Weight;
        loaded.ToDense().Should().Equal(w);
    }

    [Fact]
    public void Block_structured_90_percent_costs_four_and_a_half_bytes_per_non_zero_in_1x4_blocks()
    {
        float[] w = BlockSparse(512, 512, (1, 4), 0.9, 3);
        var m = BsrMatrix.FromDense(w, 512, 512, (1, 4));
        ((double)m.StoredBytes / m.NonZeros).Should().BeInRange(4.5, 4.6);
        ((double)CsrMatrix.FromDense(w, 512, 512).StoredBytes / m.NonZeros).Should().BeInRange(6, 6.1);
    }

    [Fact]
    public void A_block_sparse_model_round_trips_in_a_version_2_file_and_its_damage_is_named()
    {
        var model = new SparseModel(new FeatureShape(8),
        [
            new LinearLayer(BsrMatrix.FromDense(BlockSparse(12, 8, (4, 1), 0.5, 1), 12, 8, (4, 1)), Reference.Random(12, 2)),
            new ActivationLayer(ActivationKind.ReLU),
            new LinearLayer(BsrMatrix.FromDense(BlockSparse(4, 12, (4, 4), 0.3, 2), 4, 12, (4, 4)), default),
        ]);
        byte[] bytes = model.ToBytes();
        bytes[8].Should().Be(2);
        SparseModel loaded = SparseModel.Read(bytes);
        loaded.Describe().Should().Be(model.Describe()).And.Contain("BSR 4×1").And.Contain("BSR 4×4");
        float[] x = Reference.Random(3 * 8, 4);
        loaded.Run(x, 3).Should().Equal(model.Run(x, 3));
        for (int length = 0; length < bytes.Length; length++)
            FluentActions.Invoking(() => SparseModel.Read(bytes.AsSpan(0, length), "cut.psm")).Should().Throw<SparseModelFormatException>();

        // A block shape that does not tile the matrix, with the checksum repaired: refused by the parser, naming it.
        int shapeAt = FindBlockShape(bytes);
        byte[] bad = (byte[])bytes.Clone();
        bad[shapeAt] = 3;   // 3×1 blocks: not a shape the kernels run
        FluentActions.Invoking(() => SparseModel.Read(FileMutations.WithChecksum(bad[..^4]), "bad.psm")).Should().Throw<SparseModelFormatException>()
            .WithMessage("'bad.psm'*3×1 blocks*");
    }

    /// <summary>The offset of the first matrix's block shape: header (12) + input (12) + layer count (4) + layer tag + matrix tag + rows + cols.</summary>
    private static int FindBlockShape(byte[] bytes)
    {
        bytes[12 + 12 + 4 + 1].Should().Be(8, "the first matrix is BSR with uint16 block columns");
        return 12 + 12 + 4 + 1 + 1 + 8;
    }

    [Fact]
    public void Shapes_that_do_not_tile_and_unknown_blocks_are_refused_naming_the_argument()
    {
        FluentActions.Invoking(() => BsrMatrix.FromDense(new float[10 * 8], 10, 8, (4, 1))).Should().Throw<ArgumentException>()
            .WithParameterName("block").WithMessage("*10×8*4×1*");
        FluentActions.Invoking(() => BsrMatrix.FromDense(new float[8 * 8], 8, 8, (2, 2))).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("block");
        FluentActions.Invoking(() => WeightMatrix.FromDense(new float[6 * 6], 6, 6, MatrixFormat.Bsr4x4)).Should().Throw<ArgumentException>().WithParameterName("block");
    }
}
