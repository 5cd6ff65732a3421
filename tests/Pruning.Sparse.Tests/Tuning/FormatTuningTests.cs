using Pruning.Sparse.Tuning;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;

namespace Pruning.Sparse.Tests.Tuning;

public class FormatTuningTests
{
    /// <summary>conv 2→4 3×3 (stride 1), ReLU, flatten, linear 4·6·6→5: both weighted layers 70 % sparse.</summary>
    private static SparseModel Model() => new(new FeatureShape(2, 6, 6),
    [
        Conv2dLayer.FromDense(Reference.Sparse(4, 18, 0.7, seed: 11), 4, Reference.Random(4, 12), 2, (3, 3), padding: (1, 1)),
        new ActivationLayer(ActivationKind.ReLU),
        new FlattenLayer(),
        new LinearLayer(WeightMatrix.FromDense(Reference.Sparse(5, 144, 0.7, seed: 13), 5, 144), Reference.Random(5, 14)),
    ]);

    [Fact]
    public void The_fastest_candidate_of_each_weighted_layer_is_kept_and_the_function_is_unchanged()
    {
        SparseModel model = Model();
        // A timer under the test's control: dense im2col is "fastest" for the convolution, CSR for the linear layer.
        static double Timer(SparseModel alone) => alone.Layers[0] switch
        {
            Conv2dLayer { Weight: DenseMatrix } d => d.Algorithm == ConvAlgorithm.Direct ? 1.5 : 1.0,
            Conv2dLayer c => c.Algorithm == ConvAlgorithm.Direct ? 2.0 : 3.0,
            LinearLayer { Weight: CsrMatrix } => 1.0,
            _ => 5.0,
        };
        FormatTuningResult result = FormatTuning.Tune(model, [MatrixFormat.Csr, MatrixFormat.Dense], batch: 3, runs: 1, threads: 1, Timer);

        var conv = result.Model.Layers[0].Should().BeOfType<Conv2dLayer>().Subject;
        conv.Weight.Format.Should().Be(MatrixFormat.Dense);
        conv.Algorithm.Should().Be(ConvAlgorithm.Im2Col);
        result.Model.Layers[3].Should().BeOfType<LinearLayer>().Which.Weight.Format.Should().Be(MatrixFormat.Csr);
        result.Model.Layers[1].Should().BeSameAs(model.Layers[1]);
        result.Choices.Select(c => c.Index).Should().Equal(0, 3);
        result.Choices[0].Options.Should().HaveCount(4);   // CSR direct, CSR im2col, dense direct, dense im2col
        result.Choices[1].Options.Should().HaveCount(2);   // CSR, dense
        result.ToString().Should().Contain("direct").And.Contain("*");

        float[] x = Reference.Random(3 * 2 * 6 * 6, 15);
        result.Model.Run(x, 3).ShouldMatch(model.Run(x, 3));
    }

    [Fact]
    public void Layers_inside_residual_blocks_are_tuned_at_their_own_input_shapes()
    {
        // stem conv 2→4, then a residual block: main = conv 4→4 3×3, ReLU, conv 4→4 3×3; shortcut = identity.
        var model = new SparseModel(new FeatureShape(2, 6, 6),
        [
            Conv2dLayer.FromDense(Reference.Sparse(4, 18, 0.7, seed: 21), 4, Reference.Random(4, 22), 2, (3, 3), padding: (1, 1)),
            new ResidualLayer(
            [
                Conv2dLayer.FromDense(Reference.Sparse(4, 36, 0.7, seed: 23), 4, Reference.Random(4, 24), 4, (3, 3), padding: (1, 1)),
                new ActivationLayer(ActivationKind.ReLU),
                Conv2dLayer.FromDense(Reference.Sparse(4, 36, 0.7, seed: 25), 4, Reference.Random(4, 26), 4, (3, 3), padding: (1, 1)),
            ]),
        ]);
        var seen = new List<FeatureShape>();
        // Dense is "fastest" for the block's convolutions (4 input channels), CSR direct for the stem (2).
        double Timer(SparseModel alone)
        {
            seen.Add(alone.InputShape);
            var conv = (Conv2dLayer)alone.Layers[0];
            return conv.InChannels == 4 ? (conv.Weight is DenseMatrix ? 1.0 : 2.0) : (conv.Algorithm == ConvAlgorithm.Direct ? 1.0 : 2.0);
        }
        FormatTuningResult result = FormatTuning.Tune(model, [MatrixFormat.Csr, MatrixFormat.Dense], batch: 2, runs: 1, threads: 1, Timer);

        result.Choices.Select(c => c.Where).Should().Equal("0", "1.main.0", "1.main.2");
        result.Choices.Select(c => c.Index).Should().Equal(0, 1, 1);
        seen.Distinct().Should().Equal(new FeatureShape(2, 6, 6), new FeatureShape(4, 6, 6));
        ((Conv2dLayer)result.Model.Layers[0]).Algorithm.Should().Be(ConvAlgorithm.Direct);
        var block = result.Model.Layers[1].Should().BeOfType<ResidualLayer>().Subject;
        block.Main.OfType<Conv2dLayer>().Should().OnlyContain(c => c.Weight is DenseMatrix);
        block.Main[1].Should().BeSameAs(((ResidualLayer)model.Layers[1]).Main[1]);
        block.Shortcut.Should().BeEmpty();
        result.ToString().Should().Contain("layer 1.main.2:");

        float[] x = Reference.Random(2 * 2 * 6 * 6, 27);
        result.Model.Run(x, 2).ShouldMatch(model.Run(x, 2));
    }

    [Fact]
    public void A_convolution_is_timed_with_the_ReLU_and_pooling_it_can_apply_as_it_stores()
    {
        // conv, ReLU, 2×2 max pool (fusible), conv, LeakyReLU, 3×3 max pool (not), flatten, linear.
        var model = new SparseModel(new FeatureShape(2, 8, 8),
        [
            Conv2dLayer.FromDense(Reference.Sparse(4, 18, 0.7, seed: 31), 4, Reference.Random(4, 32), 2, (3, 3), padding: (1, 1)),
            new ActivationLayer(ActivationKind.ReLU),
            new Pool2dLayer(PoolKind.Max, (2, 2)),
            Conv2dLayer.FromDense(Reference.Sparse(4, 36, 0.7, seed: 33), 4, Reference.Random(4, 34), 4, (3, 3), padding: (1, 1)),
            new ActivationLayer(ActivationKind.LeakyReLU),
            new Pool2dLayer(PoolKind.Max, (3, 3), (1, 1)),
            new FlattenLayer(),
            new LinearLayer(CsrMatrix.FromDense(Reference.Sparse(3, 16, 0.5, seed: 35), 3, 16), Reference.Random(3, 36)),
        ]);
        var timed = new List<string>();
        FormatTuningResult result = FormatTuning.Tune(model, [MatrixFormat.Csr, MatrixFormat.Dense], batch: 2, runs: 1, threads: 1, alone =>
        {
            timed.Add(string.Join(" + ", alone.Layers.Select(l => l.GetType().Name)));
            return 1.0;
        });
        timed.Distinct().Should().Equal("Conv2dLayer + ActivationLayer + Pool2dLayer", "Conv2dLayer", "LinearLayer");
        result.Model.Layers.Should().HaveCount(model.Layers.Count);
        float[] x = Reference.Random(2 * 2 * 8 * 8, 37);
        result.Model.Run(x, 2).ShouldMatch(model.Run(x, 2));
    }

    [Fact]
    public void Near_ties_go_to_the_smaller_storage()
    {
        // CSR at 70 % sparsity stores 0.3·6 B = 1.8 B per weight against 4 B dense: within the tolerance it wins.
        SparseModel model = Model();
        FormatTuningResult result = FormatTuning.Tune(model, [MatrixFormat.Csr, MatrixFormat.Dense], 1, 1, 1, alone => alone.Layers[0] switch
        {
            LinearLayer { Weight: DenseMatrix } => 1.0,
            LinearLayer => 1.0 + FormatTuning.Tolerance / 2,
            _ => 1.0,
        });
        result.Model.Layers[3].Should().BeOfType<LinearLayer>().Which.Weight.Format.Should().Be(MatrixFormat.Csr);
    }

    [Fact]
    public void Measuring_for_real_gives_the_same_outputs_and_bad_arguments_are_named()
    {
        SparseModel model = Model();
        FormatTuningResult result = FormatTuning.Tune(model, batch: 2, runs: 3);
        float[] x = Reference.Random(2 * 2 * 6 * 6, 16);
        result.Model.Run(x, 2).ShouldMatch(model.Run(x, 2));
        result.Choices.SelectMany(c => c.Options).Should().OnlyContain(o => o.Milliseconds > 0);

        FluentActions.Invoking(() => FormatTuning.Tune(model, batch: 0)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("batch");
        FluentActions.Invoking(() => FormatTuning.Tune(model, runs: 0)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("runs");
        FluentActions.Invoking(() => FormatTuning.Tune(null!)).Should().Throw<ArgumentNullException>();
    }

    [Fact]
    public void Every_allowed_format_that_fits_is_a_candidate_and_the_rounding_ones_only_when_allowed()
    {
        SparseModel model = Model();
        var seen = new List<string>();
        double Timer(SparseModel alone)
        {
            seen.Add(alone.Layers[0].Describe());
            return alone.Layers[0] switch
            {
                LinearLayer { Weight.Format: MatrixFormat.CsrInt8 } => 1.0,   // int8 "fastest" for the linear layer
                Conv2dLayer { Weight.Format: MatrixFormat.Bsr4x1 } => 1.0,    // 4×1 blocks for the convolution (4 filters tile)
                _ => 2.0,
            };
        }
        FormatTuningResult all = FormatTuning.Tune(model, FormatTuning.AllFormats, 1, 1, 1, Timer);
        all.Model.Layers[0].Should().BeOfType<Conv2dLayer>().Which.Weight.Format.Should().Be(MatrixFormat.Bsr4x1);
        all.Model.Layers[3].Should().BeOfType<LinearLayer>().Which.Weight.Format.Should().Be(MatrixFormat.CsrInt8);
        // conv (4×18): CSR ×3 value encodings × (direct, im2col) + BSR 4×1 + dense × (direct, im2col); 1×4 and 4×4 do not tile 18 columns.
        all.Choices[0].Options.Should().HaveCount(9);
        // linear (5×144): CSR ×3, BSR 1×4 (5 rows rule out 4×1 and 4×4), dense.
        all.Choices[1].Options.Should().HaveCount(5);

        FormatTuningResult exact = FormatTuning.Tune(model, FormatTuning.ExactFormats, 1, 1, 1, Timer);
        exact.Model.Layers.OfType<LinearLayer>().Single().Weight.Format.Should().NotBe(MatrixFormat.CsrInt8, "rounding formats are used only when allowed");
        float[] x = Reference.Random(2 * 6 * 6, 17);
        exact.Model.Run(x, 1).ShouldMatch(model.Run(x, 1));

        FluentActions.Invoking(() => FormatTuning.Tune(model, [MatrixFormat.Auto])).Should().Throw<ArgumentException>().WithParameterName("formats");
        FluentActions.Invoking(() => FormatTuning.Tune(model, [])).Should().Throw<ArgumentException>().WithParameterName("formats");
    }

    [Fact]
    public void Reencoding_stores_every_weight_in_the_format_asked_for_inside_branches_too_and_computes_the_same()
    {
        var model = new SparseModel(new FeatureShape(2, 6, 6),
        [
            Conv2dLayer.FromDense(Reference.Sparse(4, 18, 0.7, seed: 21), 4, Reference.Random(4, 22), 2, (3, 3), padding: (1, 1)),
            new ResidualLayer([Conv2dLayer.FromDense(Reference.Sparse(4, 36, 0.8, seed: 23), 4, Reference.Random(4, 24), 4, (3, 3), padding: (1, 1))]),
            new FlattenLayer(),
            new LinearLayer(WeightMatrix.FromDense(Reference.Sparse(5, 144, 0.9, seed: 25), 5, 144), Reference.Random(5, 26)),
        ]);
        model.Layers[1].Should().BeOfType<ResidualLayer>().Which.Main[0].Should().BeOfType<Conv2dLayer>().Which.Weight.Format.Should().Be(MatrixFormat.Csr);

        SparseModel dense = FormatTuning.Reencode(model, MatrixFormat.Dense);

        dense.Layers[0].Should().BeOfType<Conv2dLayer>().Which.Weight.Format.Should().Be(MatrixFormat.Dense);
        dense.Layers[1].Should().BeOfType<ResidualLayer>().Which.Main[0].Should().BeOfType<Conv2dLayer>().Which.Weight.Format.Should().Be(MatrixFormat.Dense);
        dense.Layers[3].Should().BeOfType<LinearLayer>().Which.Weight.Format.Should().Be(MatrixFormat.Dense);
        float[] x = Reference.Random(3 * 72, 27);
        dense.Run(x, 3).Zip(model.Run(x, 3)).Should().OnlyContain(p => Math.Abs(p.First - p.Second) <= 1e-5f);

        FluentActions.Invoking(() => FormatTuning.Reencode(model, MatrixFormat.Nm2of4)).Should().Throw<ArgumentException>().WithMessage("layer 0 (Conv2d 2→4*) cannot be stored as Nm2of4*");
    }
}
