using System.Buffers.Binary;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Serialization;
using Pruning.Sparse.Tests.Serialization;

namespace Pruning.Sparse.Tests.Layers;

public class ScaleLayerTests
{
    private static Conv2dLayer Conv(int inC, int outC, int k, int padding, int seed) =>
        Conv2dLayer.FromDense(Reference.Sparse(outC, inC * k * k, 0.3, seed), outC, Reference.Random(outC, seed + 1), inC, (k, k), (1, 1), (padding, padding));

    /// <summary>A conv, then squeeze-and-excitation on its 6 channels (pool, 1×1 down to 3, ReLU, 1×1 up, Hardsigmoid), then Hardswish.</summary>
    internal static SparseModel Excitation() => new(new FeatureShape(2, 5, 5),
    [
        Conv(2, 6, 3, 1, 1),
        new ScaleLayer([new GlobalAveragePoolLayer(), Conv(6, 3, 1, 0, 3), new ActivationLayer(ActivationKind.ReLU), Conv(3, 6, 1, 0, 5), new ActivationLayer(ActivationKind.Hardsigmoid)]),
        new ActivationLayer(ActivationKind.Hardswish),
    ]);

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void Every_channel_is_scaled_by_its_own_factor_for_every_sample(int batch)
    {
        SparseModel model = Excitation();
        var scale = (ScaleLayer)model.Layers[1];
        var input = new FeatureShape(2, 5, 5);
        float[] x = Reference.Random(batch * 50, 7);
        float[] y = new SparseModel(input, [model.Layers[0]]).Run(x, batch);                       // [N, 6, 5, 5]
        float[] factors = new SparseModel(new FeatureShape(6, 5, 5), scale.Factors).Run(y, batch);  // [N, 6]
        var expected = new float[y.Length];
        for (int n = 0; n < batch; n++)
            for (int c = 0; c < 6; c++)
                for (int p = 0; p < 25; p++)
                {
                    float v = y[(n * 6 + c) * 25 + p] * factors[n * 6 + c];
                    expected[(n * 6 + c) * 25 + p] = v * Math.Clamp(v + 3, 0, 6) / 6;
                }
        model.Run(x, batch).ShouldMatch(expected);
        factors.Should().OnlyContain(f => f >= 0 && f <= 1, "a Hardsigmoid gate");
        scale.Describe().Should().StartWith("Scale × [GlobalAvgPool2d, Conv2d 6→3");
    }

    [Fact]
    public void A_scaling_round_trips_through_a_version_2_file_and_bad_ones_are_refused()
    {
        SparseModel model = Excitation();
        byte[] bytes = model.ToBytes();
        BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8)).Should().Be(2u);
        SparseModel loaded = SparseModel.Read(bytes);
        loaded.Describe().Should().Be(model.Describe());
        float[] x = Reference.Random(2 * 50, 4);
        loaded.Run(x, 2).Should().Equal(model.Run(x, 2));

        byte[] old = (byte[])bytes.Clone();
        old[8] = 1;
        FluentActions.Invoking(() => SparseModel.Read(FileMutations.WithChecksum(old[..^4]), "old.psm")).Should().Throw<SparseModelFormatException>()
            .WithMessage("'old.psm'*version-1 file cannot hold*");

        FluentActions.Invoking(() => new ScaleLayer([])).Should().Throw<ArgumentException>().WithParameterName("factors");
        FluentActions.Invoking(() => new SparseModel(new FeatureShape(6, 5, 5), [new ScaleLayer([Conv(6, 6, 1, 0, 9)])])).Should().Throw<ArgumentException>()
            .WithMessage("*gives [6, 5, 5]*one value per channel (6)*");
    }
}
