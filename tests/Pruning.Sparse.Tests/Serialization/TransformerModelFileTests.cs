using Pruning.Sparse.Matrices;
using Pruning.Sparse.Sequences;
using Pruning.Sparse.Serialization;
using Pruning.Sparse.Tests.Sequences;

namespace Pruning.Sparse.Tests.Serialization;

/// <summary>The transformer file against truncation, hostile counts and fuzzing, as the other model files.</summary>
public class TransformerModelFileTests
{
    [Theory]
    [InlineData(false, MatrixFormat.Auto)]
    [InlineData(true, MatrixFormat.CsrInt8)]
    [InlineData(false, MatrixFormat.Bsr4x1)]
    public void A_saved_model_loads_with_identical_parts_and_logits(bool tied, MatrixFormat format)
    {
        TransformerModel model = TransformerModelTests.Small(seed: 4, heads: 2, tied: tied, format: format, dimension: 16);
        string path = Path.Combine(Path.GetTempPath(), $"tfm-{Guid.NewGuid():N}.ptf");
        try
        {
            model.Save(path);
            TransformerModel loaded = TransformerModel.Load(path);
            loaded.Describe().Should().Be(model.Describe());
            loaded.Tied.Should().Be(tied);
            loaded.Blocks.Select(b => (b.NormFirst, b.Gelu)).Should().Equal(model.Blocks.Select(b => (b.NormFirst, b.Gelu)));
            loaded.FinalNorm!.Epsilon.Should().Be(model.FinalNorm!.Epsilon);
            loaded.ToBytes().Should().Equal(File.ReadAllBytes(path));
            int[] tokens = [1, 5, 9, 2, 0, 19];
            loaded.Run(tokens, 2, 3).Should().Equal(model.Run(tokens, 2, 3));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Every_truncation_is_refused_naming_the_source()
    {
        byte[] bytes = TransformerModelTests.Small().ToBytes();
        for (int length = 0; length < bytes.Length; length += Math.Max(1, bytes.Length / 300))
            FluentActions.Invoking(() => TransformerModel.Read(bytes.AsSpan(0, length), "cut.ptf")).Should().Throw<SparseModelFormatException>().WithMessage("*'cut.ptf'*");
        FluentActions.Invoking(() => SequenceModel.Read(bytes, "wrong-kind")).Should().Throw<SparseModelFormatException>().WithMessage("*does not start with \"PRNSPSEQ\"*");
    }

    [Fact]
    public void Hostile_counts_with_a_valid_checksum_are_refused_before_allocating()
    {
        // A token table claiming 2²⁸ × 2²⁸ dense values, then a block count of 2³¹, each with a correct checksum.
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            w.Write("PRNSPTFM"u8); w.Write(1u); w.Write(2u);
            w.Write((byte)1); w.Write(1 << 28); w.Write(1 << 28); w.Write(new byte[64]);
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        FluentActions.Invoking(() => TransformerModel.Read(FileMutations.WithChecksum(ms.ToArray()), "huge.ptf")).Should().Throw<SparseModelFormatException>()
            .WithMessage("*ends inside the token embedding dense weights*");
        (GC.GetAllocatedBytesForCurrentThread() - before).Should().BeLessThan(256 << 10);

        byte[] valid = TransformerModelTests.Small().ToBytes();
        // The block count sits after the heads and the two tables; find it by writing a model's prefix.
        int countAt = CountOffset(valid);
        byte[] hostile = valid[..^4];
        BitConverter.GetBytes(int.MaxValue).CopyTo(hostile, countAt);
        before = GC.GetAllocatedBytesForCurrentThread();
        FluentActions.Invoking(() => TransformerModel.Read(FileMutations.WithChecksum(hostile), "blocks.ptf")).Should().Throw<SparseModelFormatException>()
            .WithMessage("*block count 2147483647 is impossible*");
        (GC.GetAllocatedBytesForCurrentThread() - before).Should().BeLessThan(256 << 10);
    }

    /// <summary>The offset of the block count: 16 bytes of header and heads, then the two dense tables (tag, rows, cols, values).</summary>
    private static int CountOffset(byte[] bytes)
    {
        int at = 16;
        for (int table = 0; table < 2; table++)
        {
            bytes[at].Should().Be(1, "the test model's tables are dense");
            int rows = BitConverter.ToInt32(bytes, at + 1), cols = BitConverter.ToInt32(bytes, at + 5);
            at += 9 + rows * cols * 4;
        }
        BitConverter.ToInt32(bytes, at).Should().Be(2, "the test model has two blocks");
        return at;
    }

    [Fact]
    public void A_model_too_large_for_the_budget_is_refused_when_loaded()
    {
        byte[] bytes = TransformerModelTests.Small().ToBytes();
        FluentActions.Invoking(() => TransformerModel.Read(bytes, "small.ptf", new SparseModelOptions { MaxBufferBytes = 64 }))
            .Should().Throw<SparseModelFormatException>().WithMessage("*'small.ptf'*too large to run*");
    }

    [Fact]
    public void Fuzzed_files_load_or_fail_cleanly_within_a_bounded_allocation() =>
        FileMutations.ShouldLoadOrFailCleanly(TransformerModelTests.Small().ToBytes(), 20261206,
            (bytes, options) => TransformerModel.Read(bytes, "fuzz", options), model => model.Run(new int[2], 1, 2).Should().HaveCount(2 * model.Outputs));
}
