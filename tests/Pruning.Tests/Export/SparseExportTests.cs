using Pruning.Export;
using Pruning.Grouping;
using Pruning.Scheduling;
using Pruning.Sparse;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Export;

[Collection("torch")]
public class SparseExportTests
{
    private static void Prune(nn.Module model, double sparsity)
    {
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(sparsity) });
        pruner.Step();
        pruner.Strip();
    }

    private static void ShouldMatchTorch(SparseModel sparse, nn.Module model, Tensor x)
    {
        model.eval();
        using var _ = torch.no_grad();
        float[] expected = ((nn.Module<Tensor, Tensor>)model).call(x).data<float>().ToArray();
        float[] actual = sparse.Run(x.data<float>().ToArray(), (int)x.shape[0]);
        actual.Length.Should().Be(expected.Length);
        double scale = expected.Max(v => (double)Math.Abs(v));
        for (int i = 0; i < actual.Length; i++)
            ((double)Math.Abs(actual[i] - expected[i])).Should().BeLessThan(1e-4 * Math.Max(1, scale), $"output {i}");
    }

    [Fact]
    public void A_pruned_mlp_runs_the_same_in_the_sparse_runtime_and_stores_only_its_non_zeros()
    {
        var model = TestModels.Mlp(seed: 3);
        Prune(model, 0.9);
        SparseModel sparse = SparseExport.ToSparseModel(model, new FeatureShape(16), MatrixFormat.Csr);
        sparse.Layers.OfType<LinearLayer>().Select(l => l.Weight.Format).Should().AllBeEquivalentTo(MatrixFormat.Csr);
        long nonZeros = model.parameters().Where(p => p.dim() == 2).Sum(p => p.count_nonzero().item<long>());
        sparse.Layers.OfType<LinearLayer>().Sum(l => l.Weight.NonZeros).Should().Be(nonZeros);
        ShouldMatchTorch(sparse, model, TestModels.Batch(1, size: 9).X);
    }

    [Fact]
    public void A_cnn_with_batchnorm_pooling_and_flatten_matches_torch_after_folding()
    {
        torch.manual_seed(5);
        var model = nn.Sequential(
            ("conv1", nn.Conv2d(1, 6, 3, padding: 1)), ("bn1", nn.BatchNorm2d(6)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("block", nn.Sequential(("conv2", nn.Conv2d(6, 8, 3, stride: 2, bias: false)), ("bn2", nn.BatchNorm2d(8)), ("act", nn.LeakyReLU(0.1)))),
            ("pool2", nn.AvgPool2d(2, stride: 1)), ("flat", nn.Flatten()), ("drop", nn.Dropout(0.5)),
            ("fc", nn.Linear(8 * 1 * 1, 4)), ("bnfc", nn.BatchNorm1d(4)), ("tanh", nn.Tanh()));
        // Give the BatchNorms non-trivial statistics, as training would.
        model.train();
        using (torch.no_grad()) for (int i = 0; i < 5; i++) model.call(torch.randn(16, 1, 12, 12) * 2 + 0.5);
        Prune(model, 0.6);
        var x = torch.randn(7, 1, 12, 12);
        ShouldMatchTorch(SparseExport.ToSparseModel(model, new FeatureShape(1, 12, 12), MatrixFormat.Csr), model, x);
        ShouldMatchTorch(SparseExport.ToSparseModel(model, new FeatureShape(1, 12, 12), MatrixFormat.Dense), model, x);
        // Auto: the 60 %-sparse stride-1 conv1 is stored as CSR, the strided conv2 dense (the general rule); both run direct.
        SparseModel auto = SparseExport.ToSparseModel(model, new FeatureShape(1, 12, 12));
        Conv2dLayer[] convs = auto.Layers.OfType<Conv2dLayer>().ToArray();
        convs[0].Weight.Format.Should().Be(MatrixFormat.Csr);
        convs[1].Weight.Format.Should().Be(MatrixFormat.Dense);
        convs.Should().OnlyContain(c => c.Algorithm == ConvAlgorithm.Direct);
        ShouldMatchTorch(auto, model, x);
    }

    [Fact]
    public void Global_average_pooling_exports()
    {
        torch.manual_seed(6);
        var model = nn.Sequential(("conv", nn.Conv2d(1, 4, 3, padding: 1, bias: false)), ("bn", nn.BatchNorm2d(4)), ("relu", nn.ReLU()),
            ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(4, 3)));
        Prune(model, 0.5);
        ShouldMatchTorch(SparseExport.ToSparseModel(model, new FeatureShape(1, 6, 6)), model, torch.randn(3, 1, 6, 6));
        var other = nn.Sequential(("pool", nn.AdaptiveAvgPool2d(2)));
        FluentActions.Invoking(() => SparseExport.ToSparseModel(other, new FeatureShape(1, 6, 6))).Should().Throw<NotSupportedException>().WithMessage("*only 1 (global average pooling)*");
    }

    [Fact]
    public void The_exported_file_loads_and_runs_on_tensors_without_copies()
    {
        var model = TestModels.Mlp(seed: 4);
        Prune(model, 0.8);
        string path = Path.Combine(Path.GetTempPath(), $"mlp-{Guid.NewGuid():N}.psm");
        try
        {
            SparseExport.Save(model, new FeatureShape(16), path);
            SparseModel loaded = SparseModel.Load(path);
            var x = TestModels.Batch(2, size: 5).X;
            using Tensor y = loaded.Run(x);
            y.shape.Should().Equal(5, 3);
            ShouldMatchTorch(loaded, model, x);
            model.eval();
            using var _ = torch.no_grad();
            y.allclose(model.call(x), rtol: 1e-4, atol: 1e-5).Should().BeTrue();
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Unsupported_modules_are_named()
    {
        var gru = nn.Sequential(("fc", nn.Linear(4, 4)), ("soft", nn.Softmax(1)));
        FluentActions.Invoking(() => SparseExport.ToSparseModel(gru, new FeatureShape(4))).Should().Throw<NotSupportedException>().WithMessage("Module 'soft' (Softmax) cannot be exported*");
        var lonely = nn.Sequential(("bn", nn.BatchNorm1d(4)));
        FluentActions.Invoking(() => SparseExport.ToSparseModel(lonely, new FeatureShape(4))).Should().Throw<NotSupportedException>().WithMessage("BatchNorm 'bn' does not follow*");
        var reflected = nn.Sequential(("conv", nn.Conv2d(4, 4, 3, padding: 1, padding_mode: PaddingModes.Reflect)));
        FluentActions.Invoking(() => SparseExport.ToSparseModel(reflected, new FeatureShape(4, 8, 8))).Should().Throw<NotSupportedException>().WithMessage("*'conv' pads with Reflect*");
        // A model that is one layer, not a Sequential, is traced and exported as that layer.
        SparseExport.ToSparseModel(nn.Linear(3, 3), new FeatureShape(3)).Layers.Should().ContainSingle().Which.Should().BeOfType<LinearLayer>();
    }

    [Fact]
    public void Safetensors_export_compresses_weights_and_keeps_biases_and_buffers_dense()
    {
        var model = nn.Sequential(("fc", nn.Linear(10, 4)), ("bn", nn.BatchNorm1d(4)));
        Prune(model, 0.75);
        string path = Path.Combine(Path.GetTempPath(), $"m-{Guid.NewGuid():N}.safetensors");
        try
        {
            SparseExport.SaveSafeTensors(model, path);
            using var header = SafeTensorsBitmask.ReadHeader(path);
            var names = header.RootElement.EnumerateObject().Select(p => p.Name).ToArray();
            names.Should().Contain(["fc.shape", "fc.compressed", "fc.bitmask", "fc.row_offsets", "fc.bias", "bn.weight", "bn.running_mean"]);
            header.RootElement.GetProperty("fc.compressed").GetProperty("shape")[0].GetInt64().Should().Be(10);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void What_block_and_n_of_m_granularities_train_exports_to_their_formats_without_fill_in()
    {
        var blocks = TestModels.Mlp(seed: 8);
        using (var pruner = new GradualPruner(blocks, new PruningOptions { Schedule = new OneShotSchedule(0.75), Granularity = PruningGranularity.Blocks(1, 4) }))
        {
            pruner.Step();
            pruner.Strip();
        }
        SparseModel bsr = SparseExport.ToSparseModel(blocks, new FeatureShape(16), MatrixFormat.Bsr1x4);
        bsr.Layers.OfType<LinearLayer>().Should().OnlyContain(l => l.Weight is BsrMatrix && l.Weight.StoredEntries == l.Weight.NonZeros);
        ShouldMatchTorch(bsr, blocks, TestModels.Batch(2, size: 9).X);
        FluentActions.Invoking(() => SparseExport.ToSparseModel(blocks, new FeatureShape(16), MatrixFormat.Bsr4x1)).Should().Throw<ArgumentException>()
            .WithParameterName("format").WithMessage("Layer 'fc3' cannot be stored as Bsr4x1: A 3×24 matrix does not split into 4×1 blocks*");

        var nm = TestModels.Mlp(seed: 9);
        using (var pruner = new GradualPruner(nm, new PruningOptions { Schedule = new OneShotSchedule(0.5), Granularity = PruningGranularity.NOfM(2, 4) }))
        {
            pruner.Step();
            pruner.Strip();
        }
        SparseModel twoOfFour = SparseExport.ToSparseModel(nm, new FeatureShape(16), MatrixFormat.Nm2of4);
        twoOfFour.Layers.OfType<LinearLayer>().Should().OnlyContain(l => l.Weight is NmMatrix);
        ShouldMatchTorch(twoOfFour, nm, TestModels.Batch(3, size: 9).X);
        FluentActions.Invoking(() => SparseExport.ToSparseModel(blocks, new FeatureShape(16), MatrixFormat.Nm2of4)).Should().Throw<ArgumentException>()
            .WithParameterName("format").WithMessage("Layer 'fc1' cannot be stored as Nm2of4: Row *more than 2 non-zeros*");
    }

    [Fact]
    public void A_depthwise_separable_network_runs_the_same_in_the_runtime_and_after_a_file_round_trip()
    {
        torch.manual_seed(12);
        var model = nn.Sequential(
            ("conv", nn.Conv2d(1, 8, 3, stride: 2, padding: 1, bias: false)), ("bn", nn.BatchNorm2d(8)), ("relu", nn.ReLU6()),
            ("dw", nn.Conv2d(8, 8, 3, padding: 1, groups: 8, bias: false)), ("dwbn", nn.BatchNorm2d(8)), ("dwrelu", nn.ReLU6()),
            ("pw", nn.Conv2d(8, 16, 1, bias: false)), ("pwbn", nn.BatchNorm2d(16)), ("pwrelu", nn.ReLU()),
            ("grouped", nn.Conv2d(16, 16, 3, stride: 2, padding: 1, groups: 4)), ("gap", nn.AdaptiveAvgPool2d(1)),
            ("flat", nn.Flatten()), ("fc", nn.Linear(16, 5)));
        model.train();
        using (torch.no_grad()) for (int i = 0; i < 5; i++) model.call(torch.randn(8, 1, 14, 14));
        model.eval();
        using (var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5) }))
        {
            pruner.Step();
            pruner.Strip();
        }
        var shape = new FeatureShape(1, 14, 14);
        SparseModel sparse = SparseExport.ToSparseModel(model, shape);
        sparse.Layers.OfType<Conv2dLayer>().Select(c => c.Groups).Should().Equal(1, 8, 1, 4);
        using var x = torch.randn(3, 1, 14, 14);
        ShouldMatchTorch(sparse, model, x);
        ShouldMatchTorch(SparseModel.Read(sparse.ToBytes()), model, x);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Ceil_mode_pooling_keeps_the_last_partial_window_as_torch_does(bool countIncludePad)
    {
        torch.manual_seed(13);
        var model = nn.Sequential(
            ("conv", nn.Conv2d(2, 3, 3)), ("max", nn.MaxPool2d(3, stride: 2, ceil_mode: true)),
            ("avg", nn.AvgPool2d(3, stride: 2, padding: 1, ceil_mode: true, count_include_pad: countIncludePad)),
            ("max2", nn.MaxPool2d(2, ceil_mode: true)), ("flat", nn.Flatten()));
        // 14×12 after the conv → 7×6 (floor would give 6×5) → 4×4 (floor: 4×3) → 2×2: the partial windows are used.
        var shape = new FeatureShape(2, 16, 14);
        SparseModel sparse = SparseExport.ToSparseModel(model, shape);
        sparse.OutputShape.Should().Be(new FeatureShape(3 * 2 * 2));
        sparse.Layers.OfType<Pool2dLayer>().Should().OnlyContain(p => p.CeilMode);
        using var x = torch.randn(2, 2, 16, 14);
        ShouldMatchTorch(sparse, model, x);
        ShouldMatchTorch(SparseModel.Read(sparse.ToBytes()), model, x);
    }
}
