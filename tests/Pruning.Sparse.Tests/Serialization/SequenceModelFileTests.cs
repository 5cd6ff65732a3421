using System.Buffers.Binary;
using Pruning.Sparse.Sequences;
using Pruning.Sparse.Serialization;
using Pruning.Sparse.Tests.Sequences;

namespace Pruning.Sparse.Tests.Serialization;

/// <summary>The sequence-model file against truncation, hostile counts and fuzzing, as the chain model's file.</summary>
public class SequenceModelFileTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_saved_model_loads_with_identical_parts_and_logits(bool gru)
    {
        SequenceModel model = SequenceModelTests.Lstm(seed: 4, gru);
        string path = Path.Combine(Path.GetTempPath(), $"seq-{Guid.NewGuid():N}.psq");
        try
        {
            model.Save(path);
            SequenceModel loaded = SequenceModel.Load(path);
            loaded.Describe().Should().Be(model.Describe());
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
        byte[] bytes = SequenceModelTests.Lstm().ToBytes();
        for (int length = 0; length < bytes.Length; length += Math.Max(1, bytes.Length / 200))
            FluentActions.Invoking(() => SequenceModel.Read(bytes.AsSpan(0, length), "cut.psq")).Should().Throw<SparseModelFormatException>().WithMessage("*'cut.psq'*");
        FluentActions.Invoking(() => SparseModel.Read(bytes, "wrong-kind")).Should().Throw<SparseModelFormatException>().WithMessage("*does not start with \"PRNSPMDL\"*");
    }

    [Fact]
    public void Hostile_counts_with_a_valid_checksum_are_refused_before_allocating()
    {
        // A layer count of 2³¹ and an embedding claiming 2²⁸ × 2²⁸ dense values, each with a correct checksum.
        byte[] valid = SequenceModelTests.Lstm().ToBytes();
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            w.Write("PRNSPSEQ"u8); w.Write(1u);
            w.Write((byte)1); w.Write(1 << 28); w.Write(1 << 28); w.Write(new byte[64]);
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        FluentActions.Invoking(() => SequenceModel.Read(FileMutations.WithChecksum(ms.ToArray()), "huge.psq")).Should().Throw<SparseModelFormatException>()
            .WithMessage("*ends inside the embedding dense weights*");
        (GC.GetAllocatedBytesForCurrentThread() - before).Should().BeLessThan(256 << 10);
    }

    [Fact]
    public void A_model_too_large_for_the_budget_is_refused_when_loaded()
    {
        byte[] bytes = SequenceModelTests.Lstm().ToBytes();
        FluentActions.Invoking(() => SequenceModel.Read(bytes, "small.psq", new SparseModelOptions { MaxBufferBytes = 64 }))
            .Should().Throw<SparseModelFormatException>().WithMessage("*'small.psq'*too large to run*");
    }

    [Fact]
    public void Fuzzed_files_load_or_fail_cleanly_within_a_bounded_allocation() =>
        FileMutations.ShouldLoadOrFailCleanly(SequenceModelTests.Lstm().ToBytes(), 20261201,
            (bytes, options) => SequenceModel.Read(bytes, "fuzz", options), model => model.Run(new int[2], 1, 2).Should().HaveCount(2 * model.Outputs));
}
