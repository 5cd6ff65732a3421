using System.Buffers.Binary;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Serialization;
using Pruning.Sparse.Tests.Serialization;

namespace Pruning.Sparse.Tests.Layers;

public class ConcatLayerTests
{
    private static LinearLayer Linear(int rows, int cols, int seed) =>
        new(WeightMatrix.FromDense(Reference.Sparse(rows, cols, 0.5, seed), rows, cols), Reference.Random(rows, seed + 1));

    private static Conv2dLayer Conv(int inC, int outC, int k, int padding, int seed) =>
        Conv2dLayer.FromDense(Reference.Sparse(outC, inC * k * k, 0.5, seed), outC, Reference.Random(outC, seed + 1), inC, (k, k), (1, 1), (padding, padding));

    /// <summary>Per sample (PyTorch's [N, C, H, W]), the branches' outputs one after another: torch.cat(…, 1).</summary>
    private static float[] Cat(int batch, params (float[] Values, int PerSample)[] parts)
    {
        var result = new List<float>();
        for (int n = 0; n < batch; n++)
            foreach (var (values, per) in parts) result.AddRange(values.Skip(n * per).Take(per));
        return [.. result];
    }

    /// <summary>An Inception-like module: a 1×1 branch, a 3×3 branch, a pooled 1×1 branch and the identity, 4×6×6 in.</summary>
    internal static SparseModel Inception() => new(new FeatureShape(4, 6, 6),
    [
        new ConcatLayer(
        [
            [Conv(4, 3, 1, 0, 1)],
            [Conv(4, 2, 1, 0, 3), new ActivationLayer(ActivationKind.ReLU), Conv(2, 5, 3, 1, 5)],
            [new Pool2dLayer(PoolKind.Max, (3, 3), (1, 1), (1, 1)), Conv(4, 2, 1, 0, 7)],
            [],
        ]),
        new ActivationLayer(ActivationKind.ReLU),
    ]);

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void Branches_are_laid_side_by_side_along_channels_at_every_batch_size(int batch)
    {
        SparseModel model = Inception();
        var concat = (ConcatLayer)model.Layers[0];
        model.OutputShape.Should().Be(new FeatureShape(3 + 5 + 2 + 4, 6, 6));
        float[] x = Reference.Random(batch * 4 * 36, 9);
        var input = new FeatureShape(4, 6, 6);
        var parts = concat.Branches.Select(b => b.Count == 0 ? (x, 4 * 36) : (new SparseModel(input, b).Run(x, batch), new SparseModel(input, b).OutputShape.Size)).ToArray();
        model.Run(x, batch).ShouldMatch(Cat(batch, parts).Select(v => Math.Max(0, v)).ToArray());
        concat.Describe().Should().StartWith("Concat [Conv2d").And.EndWith("| identity");
    }

    [Fact]
    public void Feature_vectors_concatenate_too()
    {
        var model = new SparseModel(new FeatureShape(5), [new ConcatLayer([[Linear(3, 5, 1)], [Linear(2, 5, 3), new ActivationLayer(ActivationKind.Tanh)]])]);
        model.OutputShape.Should().Be(new FeatureShape(5));
        float[] x = Reference.Random(4 * 5, 2);
        float[] a = new SparseModel(new FeatureShape(5), [Linear(3, 5, 1)]).Run(x, 4);
        float[] b = new SparseModel(new FeatureShape(5), [Linear(2, 5, 3), new ActivationLayer(ActivationKind.Tanh)]).Run(x, 4);
        model.Run(x, 4).ShouldMatch(Cat(4, (a, 3), (b, 2)));
    }

    [Fact]
    public void A_concatenation_round_trips_through_a_version_2_file()
    {
        SparseModel model = Inception();
        byte[] bytes = model.ToBytes();
        BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8)).Should().Be(2u);
        SparseModel loaded = SparseModel.Read(bytes);
        loaded.Describe().Should().Be(model.Describe());
        loaded.ToBytes().Should().Equal(bytes);
        float[] x = Reference.Random(2 * 4 * 36, 4);
        loaded.Run(x, 2).Should().Equal(model.Run(x, 2));

        byte[] old = (byte[])bytes.Clone();
        old[8] = 1;
        FluentActions.Invoking(() => SparseModel.Read(FileMutations.WithChecksum(old[..^4]), "old.psm")).Should().Throw<SparseModelFormatException>()
            .WithMessage("'old.psm'*concatenation*version-1 file cannot hold*");
    }

    [Theory]
    [InlineData(1u, "*1 branches; 2 to 64*")]
    [InlineData(65u, "*65 branches; 2 to 64*")]
    [InlineData(uint.MaxValue, "*branches; 2 to 64*")]
    public void Hostile_branch_counts_are_refused_before_anything_is_allocated(uint branches, string message)
    {
        byte[] bytes = Inception().ToBytes();
        int count = 12 + 12 + 4 + 1;   // header, input shape, layer count, the concat's tag: its branch count
        bytes[count - 1].Should().Be(9);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(count), branches);
        FluentActions.Invoking(() => SparseModel.Read(FileMutations.WithChecksum(bytes[..^4]), "hostile.psm")).Should().Throw<SparseModelFormatException>()
            .WithMessage("'hostile.psm'*").WithMessage(message);

        byte[] longBranch = Inception().ToBytes();
        BinaryPrimitives.WriteUInt32LittleEndian(longBranch.AsSpan(count + 4), 1_000_000_000);
        FluentActions.Invoking(() => SparseModel.Read(FileMutations.WithChecksum(longBranch[..^4]), "long.psm")).Should().Throw<SparseModelFormatException>()
            .WithMessage("*claims 1000000000 layers, more than the bytes that follow*");
    }

    [Fact]
    public void Every_truncation_of_a_graph_file_is_refused_naming_the_file()
    {
        byte[] bytes = Inception().ToBytes();
        for (int length = 0; length < bytes.Length; length += 7)
        {
            byte[] cut = length > 4 ? FileMutations.WithChecksum(bytes[..(length - 4)]) : bytes[..length];
            FluentActions.Invoking(() => SparseModel.Read(cut, "cut.psm")).Should().Throw<SparseModelFormatException>().WithMessage("'cut.psm'*");
        }
    }

    [Fact]
    public void Branches_that_do_not_share_height_and_width_and_too_few_branches_are_refused()
    {
        var strided = Conv2dLayer.FromDense(Reference.Sparse(2, 4 * 9, 0.5, 1), 2, default, 4, (3, 3), (2, 2), (1, 1));
        FluentActions.Invoking(() => new SparseModel(new FeatureShape(4, 6, 6), [new ConcatLayer([[strided], []])])).Should().Throw<ArgumentException>()
            .WithMessage("*share height and width*");
        FluentActions.Invoking(() => new ConcatLayer([[]])).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("branches");
    }
}
