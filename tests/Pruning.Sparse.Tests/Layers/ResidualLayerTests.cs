using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Serialization;
using Pruning.Sparse.Tests.Serialization;

namespace Pruning.Sparse.Tests.Layers;

public class ResidualLayerTests
{
    private static LinearLayer Linear(int rows, int cols, int seed, double sparsity = 0.5) =>
        new(WeightMatrix.FromDense(Reference.Sparse(rows, cols, sparsity, seed), rows, cols), Reference.Random(rows, seed + 1));

    private static Conv2dLayer Conv(int inC, int outC, int k, int stride, int padding, int seed) =>
        Conv2dLayer.FromDense(Reference.Sparse(outC, inC * k * k, 0.5, seed), outC, Reference.Random(outC, seed + 1), inC, (k, k), (stride, stride), (padding, padding));

    [Fact]
    public void An_identity_block_adds_its_input_to_its_main_branch()
    {
        SparseLayer[] main = [Linear(6, 6, 1), new ActivationLayer(ActivationKind.ReLU), Linear(6, 6, 3)];
        var block = new SparseModel(new FeatureShape(6), [new ResidualLayer(main), new ActivationLayer(ActivationKind.ReLU)]);
        var branch = new SparseModel(new FeatureShape(6), main);
        float[] x = Reference.Random(5 * 6, 4);
        float[] expected = branch.Run(x, 5).Zip(x, (m, v) => Math.Max(0, m + v)).ToArray();
        block.Run(x, 5).ShouldMatch(expected);
        block.Layers[0].Describe().Should().StartWith("Residual [Linear 6→6").And.Contain(", ReLU, Linear 6→6").And.EndWith("] + identity");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void A_downsampling_block_adds_its_shortcut_branch_at_every_batch_size(int batch)
    {
        // ResNet's basic block with a strided 1×1 shortcut: 4 → 8 channels, 9×9 → 5×5.
        SparseLayer[] main = [Conv(4, 8, 3, 2, 1, 10), new ActivationLayer(ActivationKind.ReLU), Conv(8, 8, 3, 1, 1, 12)];
        SparseLayer[] shortcut = [Conv(4, 8, 1, 2, 0, 14)];
        var block = new SparseModel(new FeatureShape(4, 9, 9), [new ResidualLayer(main, shortcut)]);
        block.OutputShape.Should().Be(new FeatureShape(8, 5, 5));
        float[] x = Reference.Random(batch * 4 * 81, 15);
        float[] m = new SparseModel(new FeatureShape(4, 9, 9), main).Run(x, batch), s = new SparseModel(new FeatureShape(4, 9, 9), shortcut).Run(x, batch);
        block.Run(x, batch).ShouldMatch(m.Zip(s, (a, b) => a + b).ToArray());

        SparseModel loaded = SparseModel.Read(block.ToBytes());
        loaded.Describe().Should().Be(block.Describe());
        loaded.Run(x, batch).Should().Equal(block.Run(x, batch));
    }

    [Fact]
    public void Branches_that_do_not_meet_and_nesting_without_bound_are_refused()
    {
        FluentActions.Invoking(() => new SparseModel(new FeatureShape(6), [new ResidualLayer([Linear(4, 6, 1)])])).Should().Throw<ArgumentException>()
            .WithMessage("*main branch gives [4] but its shortcut gives [6]*");
        FluentActions.Invoking(() => new ResidualLayer([])).Should().Throw<ArgumentException>().WithParameterName("main");
        SparseLayer nested = Linear(3, 3, 5);
        for (int depth = 0; depth < ResidualLayer.MaxDepth; depth++) nested = new ResidualLayer([nested]);
        FluentActions.Invoking(() => new ResidualLayer([nested])).Should().Throw<ArgumentException>().WithMessage("*nest 9 deep*");

        // A file nesting 9 blocks, each holding only the next (checksum repaired): refused by the parser, naming the file.
        var model = new SparseModel(new FeatureShape(3), [nested]);
        byte[] bytes = model.ToBytes();
        int first = 12 + 12 + 4;                                   // header, input shape, layer count: the outer block's tag
        bytes[first].Should().Be(8);
        var hostile = new List<byte>(bytes[..first]);
        hostile.AddRange([8, 1, 0, 0, 0]);                         // one more block around the whole chain: main has 1 layer
        hostile.AddRange(bytes[first..^4]);
        hostile.AddRange([0, 0, 0, 0]);                            // its shortcut: identity
        FluentActions.Invoking(() => SparseModel.Read(FileMutations.WithChecksum([.. hostile]), "deep.psm")).Should().Throw<SparseModelFormatException>()
            .WithMessage("'deep.psm'*more than 8 deep*");
    }
}
