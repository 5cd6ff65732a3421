using Microsoft.ML.OnnxRuntime;
using Onnx;
using Pruning.Export;
using Pruning.Scheduling;
using Pruning.Sparse.Layers;
using Pruning.Structure;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Export;

/// <summary>Every exported file is loaded by ONNX Runtime and run against TorchSharp on the same inputs.</summary>
[Collection("torch")]
public class OnnxExportTests
{
    private static void Prune(nn.Module model, double sparsity)
    {
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(sparsity) });
        pruner.Step();
        pruner.Strip();
    }

    /// <summary>Gives the BatchNorms of a model real running statistics and non-trivial scales, as training would.</summary>
    private static void Warm(Sequential model, long[] inputShape)
    {
        model.train();
        using (torch.no_grad())
        {
            for (int i = 0; i < 5; i++) model.call(torch.randn(inputShape) * 2 + 0.5);
            foreach (var (name, p) in model.named_parameters().Where(p => p.name.StartsWith("bn", StringComparison.Ordinal)))
                p.copy_(name.EndsWith("weight", StringComparison.Ordinal) ? torch.rand(p.shape) + 0.2 : torch.randn(p.shape) * 0.2);
        }
        model.eval();
    }

    /// <summary>Runs the file in ONNX Runtime on <paramref name="x"/> and returns the output and its shape.</summary>
    internal static (float[] Values, long[] Shape) RunOrt(byte[] onnx, Tensor x, string input = "input")
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1 };
        using var session = new InferenceSession(onnx, options);
        using var value = OrtValue.CreateTensorValueFromMemory(TestModels.Values(x), x.shape);
        using var outputs = session.Run(new RunOptions(), [input], [value], session.OutputNames);
        var output = outputs[0];
        return (output.GetTensorDataAsSpan<float>().ToArray(), output.GetTensorTypeAndShape().Shape);
    }

    internal static void ShouldMatchTorch(byte[] onnx, nn.Module<Tensor, Tensor> model, Tensor x)
    {
        model.eval();
        using var _ = torch.no_grad();
        using Tensor y = model.call(x);
        float[] expected = TestModels.Values(y);
        var (actual, shape) = RunOrt(onnx, x);
        shape.Should().Equal(y.shape);
        double scale = Math.Max(1, expected.Max(v => Math.Abs((double)v)));
        for (int i = 0; i < actual.Length; i++)
            Math.Abs(actual[i] - expected[i]).Should().BeLessThan((float)(1e-4 * scale), $"output {i}");
    }

    private static float[] InitializerValues(TensorProto t) =>
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray();

    [Fact]
    public void A_pruned_mlp_keeps_its_zeros_and_runs_the_same_in_onnx_runtime_at_any_batch_size()
    {
        var model = TestModels.Mlp(seed: 4);
        Prune(model, 0.9);
        byte[] onnx = OnnxExport.ToBytes(model, new FeatureShape(16));

        ModelProto proto = ModelProto.Parser.ParseFrom(onnx);
        proto.OpsetImport.Single().Version.Should().Be(17);
        proto.Graph.Node.Select(n => n.OpType).Should().Equal("Gemm", "Relu", "Gemm", "Relu", "Gemm");
        proto.Graph.Input.Single().Type.TensorType.Shape.Dim.Select(d => d.DimParam).First().Should().Be("batch");
        // The pruned weights are exact zeros in the file: as many as in the model.
        long zeros = model.named_parameters().Where(p => p.name.EndsWith("weight", StringComparison.Ordinal)).Sum(p => p.parameter.numel() - p.parameter.count_nonzero().item<long>());
        zeros.Should().BeGreaterThan(0);
        proto.Graph.Initializer.Where(t => t.Name.EndsWith("weight", StringComparison.Ordinal)).Sum(t => (long)InitializerValues(t).Count(v => v == 0)).Should().Be(zeros);

        ShouldMatchTorch(onnx, model, TestModels.Batch(1, size: 1).X);
        ShouldMatchTorch(onnx, model, TestModels.Batch(2, size: 7).X);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_cnn_with_batchnorm_pooling_and_flatten_matches_torch_folded_or_not(bool fold)
    {
        torch.manual_seed(5);
        var model = nn.Sequential(
            ("conv1", nn.Conv2d(1, 6, 3, padding: 1)), ("bn1", nn.BatchNorm2d(6)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("block", nn.Sequential(("conv2", nn.Conv2d(6, 8, 3, stride: 2, bias: false)), ("bn2", nn.BatchNorm2d(8)), ("act", nn.LeakyReLU(0.1)))),
            ("pool2", nn.AvgPool2d(2, stride: 1, padding: 1, count_include_pad: false)), ("flat", nn.Flatten()), ("drop", nn.Dropout(0.5)),
            ("fc", nn.Linear(8 * 3 * 3, 4)), ("bnfc", nn.BatchNorm1d(4)), ("tanh", nn.Tanh()));
        Warm(model, [16, 1, 12, 12]);
        Prune(model, 0.6);

        byte[] onnx = OnnxExport.ToBytes(model, new FeatureShape(1, 12, 12), new OnnxExportOptions { FoldBatchNorm = fold });

        var ops = ModelProto.Parser.ParseFrom(onnx).Graph.Node.Select(n => n.OpType).ToArray();
        ops.Count(op => op == "BatchNormalization").Should().Be(fold ? 0 : 3);
        ops.Should().ContainInOrder("Conv", "Relu", "MaxPool", "Conv", "LeakyRelu", "AveragePool", "Flatten", "Gemm", "Tanh");
        ShouldMatchTorch(onnx, model, torch.randn(5, 1, 12, 12));
    }

    [Fact]
    public void Depthwise_and_grouped_convolutions_ceil_mode_pooling_and_the_other_activations_match_torch()
    {
        torch.manual_seed(7);
        var model = nn.Sequential(
            ("conv1", nn.Conv2d(3, 8, 3, stride: 2, padding: 1)), ("bn1", nn.BatchNorm2d(8)), ("relu1", nn.ReLU6()),
            ("dw", nn.Conv2d(8, 8, 3, padding: 2, dilation: 2, groups: 8, bias: false)), ("bn2", nn.BatchNorm2d(8)), ("silu", nn.SiLU()),
            ("grouped", nn.Conv2d(8, 12, 1, groups: 4)), ("elu", nn.ELU(0.7)),
            ("pool", nn.MaxPool2d(3, stride: 2, ceil_mode: true)),
            ("row", nn.Linear(3, 5)), ("sigmoid", nn.Sigmoid()),   // Linear on the last dimension of a rank-4 tensor: MatMul + Add
            ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(12, 6)), ("softmax", nn.LogSoftmax(1)));
        Warm(model, [4, 3, 11, 11]);
        Prune(model, 0.5);

        byte[] onnx = OnnxExport.ToBytes(model, new FeatureShape(3, 11, 11), new OnnxExportOptions { Opset = 13 });

        var graph = ModelProto.Parser.ParseFrom(onnx).Graph;
        graph.Node.Where(n => n.OpType == "Conv").Select(n => n.Attribute.Single(a => a.Name == "group").I).Should().Equal(1, 8, 4);
        graph.Node.Select(n => n.OpType).Should().Contain(["Clip", "Mul", "MatMul", "Add", "GlobalAveragePool", "LogSoftmax"]);
        ShouldMatchTorch(onnx, model, torch.randn(3, 3, 11, 11));
    }

    [Fact]
    public void The_channel_shrunk_model_exports_smaller_and_matches_the_masked_model()
    {
        torch.manual_seed(9);
        var model = nn.Sequential(
            ("conv1", nn.Conv2d(1, 8, 3, padding: 1)), ("bn1", nn.BatchNorm2d(8)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(8, 12, 3)), ("bn2", nn.BatchNorm2d(12)), ("relu2", nn.ReLU()),
            ("flat", nn.Flatten()), ("fc1", nn.Linear(12 * 4 * 4, 16)), ("relu3", nn.ReLU()), ("fc2", nn.Linear(16, 10)));
        Warm(model, [16, 1, 12, 12]);
        using (var example = torch.randn(2, 1, 12, 12))
        {
            var channels = ChannelGraph.Trace(model, example);
            TestModels.PruneChannels(model, channels, 0.5, "conv1.weight", "conv2.weight", "fc1.weight");
        }
        var input = new FeatureShape(1, 12, 12);
        using var x = torch.randn(6, 1, 12, 12);
        byte[] masked = OnnxExport.ToBytes(model, input);
        Tensor expected;
        using (torch.no_grad()) expected = model.call(x).detach().clone();
        using (var example = torch.randn(2, 1, 12, 12)) ChannelGraph.Trace(model, example).ShrinkInPlace();
        byte[] shrunk = OnnxExport.ToBytes(model, input);

        long Weights(byte[] file) => ModelProto.Parser.ParseFrom(file).Graph.Initializer.Sum(t => t.Dims.Aggregate(1L, (a, d) => a * d));
        // BatchNorms are folded: the file holds the convolutions' and Linears' weights and biases only.
        Weights(shrunk).Should().Be(4 * 9 + 4 + 6 * 4 * 9 + 6 + 8 * 96 + 8 + 10 * 8 + 10);
        Weights(masked).Should().Be(8 * 9 + 8 + 12 * 8 * 9 + 12 + 16 * 192 + 16 + 10 * 16 + 10);
        ShouldMatchTorch(shrunk, model, x);   // the shrunk model and its file compute what the masked model computed
        ShouldMatchTorch(masked, model, x);
        using (torch.no_grad()) model.call(x).allclose(expected, rtol: 1e-5, atol: 1e-5).Should().BeTrue();
    }

    [Fact]
    public void Every_supported_opset_loads_and_the_file_is_written_whole()
    {
        var model = TestModels.Mlp(seed: 2);
        using var x = TestModels.Batch(3, size: 4).X;
        for (int opset = OnnxExportOptions.MinOpset; opset <= OnnxExportOptions.MaxOpset; opset++)
            ShouldMatchTorch(OnnxExport.ToBytes(model, new FeatureShape(16), new OnnxExportOptions { Opset = opset }), model, x);

        string dir = Directory.CreateTempSubdirectory("onnx-export").FullName;
        try
        {
            string path = Path.Combine(dir, "mlp.onnx");
            OnnxExport.Save(model, new FeatureShape(16), path, new OnnxExportOptions { InputName = "x", OutputName = "logits" });
            Directory.GetFiles(dir).Should().Equal(path);
            using var session = new InferenceSession(path);
            session.InputNames.Should().Equal("x");
            session.OutputNames.Should().Equal("logits");
            RunOrt(File.ReadAllBytes(path), x, input: "x").Values.Should().HaveCount(4 * 3);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Names_that_collide_with_the_graph_input_or_output_are_made_unique()
    {
        torch.manual_seed(1);
        var model = nn.Sequential(("input", nn.Linear(4, 3)), ("output", nn.ReLU()), ("last", nn.Linear(3, 2)));
        byte[] onnx = OnnxExport.ToBytes(model, new FeatureShape(4));
        var graph = ModelProto.Parser.ParseFrom(onnx).Graph;
        graph.Node.SelectMany(n => n.Output).Should().OnlyHaveUniqueItems().And.EndWith("output");
        ShouldMatchTorch(onnx, model, torch.randn(2, 4));
    }

    [Fact]
    public void What_cannot_be_exported_is_refused_with_its_name()
    {
        var input = new FeatureShape(1, 8, 8);
        FluentActions.Invoking(() => OnnxExport.ToBytes(nn.Sequential(("conv", nn.Conv2d(1, 2, 3)), ("gelu", nn.GELU())), input))
            .Should().Throw<NotSupportedException>().WithMessage("*'gelu' (GELU)*");
        FluentActions.Invoking(() => OnnxExport.ToBytes(nn.Sequential(("pool", nn.AdaptiveAvgPool2d(2))), input))
            .Should().Throw<NotSupportedException>().WithMessage("*'pool'*only 1*");
        FluentActions.Invoking(() => OnnxExport.ToBytes(nn.Sequential(("conv", nn.Conv2d(1, 2, 3, padding_mode: PaddingModes.Reflect))), input))
            .Should().Throw<NotSupportedException>().WithMessage("*'conv' pads with Reflect*");
        FluentActions.Invoking(() => OnnxExport.ToBytes(nn.Sequential(("fc", nn.Linear(4, 2)), ("pool", nn.MaxPool2d(2))), new FeatureShape(4)))
            .Should().Throw<NotSupportedException>().WithMessage("'pool' (MaxPool2d) failed on the traced input*");
        FluentActions.Invoking(() => OnnxExport.ToBytes(nn.Sequential(("fc", nn.Linear(4, 2)), ("bn", nn.BatchNorm1d(2, track_running_stats: false))), new FeatureShape(4)))
            .Should().Throw<NotSupportedException>().WithMessage("*'bn' does not track running statistics*");
        FluentActions.Invoking(() => OnnxExport.ToBytes(TestModels.Mlp(1), new FeatureShape(16), new OnnxExportOptions { Opset = 12 }))
            .Should().Throw<ArgumentOutOfRangeException>().WithParameterName("Opset");
        FluentActions.Invoking(() => OnnxExport.ToBytes(new Custom(), new FeatureShape(16)))
            .Should().Throw<NotSupportedException>().WithMessage("Module 'custom' (Custom) cannot be exported*");
    }

    /// <summary>A small ResNet for 28×28 inputs: stem, an identity block, a downsampling block (strided 1×1 shortcut), global pooling, classifier.</summary>
    internal static Sequential SmallResNet(int seed)
    {
        torch.manual_seed(seed);
        var model = nn.Sequential(
            ("stem", nn.Conv2d(1, 8, 3, padding: 1, bias: false)), ("stem_bn", nn.BatchNorm2d(8)), ("stem_relu", nn.ReLU()),
            ("block1", new Residual(nn.Sequential(
                ("conv1", nn.Conv2d(8, 8, 3, padding: 1, bias: false)), ("bn1", nn.BatchNorm2d(8)), ("relu", nn.ReLU()),
                ("conv2", nn.Conv2d(8, 8, 3, padding: 1, bias: false)), ("bn2", nn.BatchNorm2d(8))))),
            ("relu1", nn.ReLU()),
            ("block2", new Residual(
                nn.Sequential(("conv1", nn.Conv2d(8, 16, 3, stride: 2, padding: 1, bias: false)), ("bn1", nn.BatchNorm2d(16)), ("relu", nn.ReLU()),
                    ("conv2", nn.Conv2d(16, 16, 3, padding: 1, bias: false)), ("bn2", nn.BatchNorm2d(16))),
                nn.Sequential(("conv", nn.Conv2d(8, 16, 1, stride: 2, bias: false)), ("bn", nn.BatchNorm2d(16))))),
            ("relu2", nn.ReLU()), ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(16, 10)));
        Warm(model, [8, 1, 28, 28]);
        return model;
    }

    [Fact]
    public void A_small_resnet_exports_to_onnx_and_to_the_runtime_and_both_match_torch()
    {
        var model = SmallResNet(21);
        model.named_parameters().Select(p => p.name).Should().Contain(["block1.main.conv1.weight", "block2.shortcut.conv.weight"]);
        Prune(model, 0.7);   // every convolution, inside the blocks too
        model.get_parameter("block2.main.conv2.weight")!.count_nonzero().item<long>().Should().BeLessThan(16 * 16 * 9 / 2);
        var shape = new FeatureShape(1, 28, 28);
        using var x = torch.randn(4, 1, 28, 28);

        byte[] onnx = OnnxExport.ToBytes(model, shape);
        ModelProto.Parser.ParseFrom(onnx).Graph.Node.Count(n => n.OpType == "Add").Should().Be(2);
        ShouldMatchTorch(onnx, model, x);

        Pruning.Sparse.SparseModel runtime = SparseExport.ToSparseModel(model, shape);
        runtime.Layers.OfType<ResidualLayer>().Should().HaveCount(2);
        using var _ = torch.no_grad();
        float[] expected = TestModels.Values(model.call(x));
        float[] actual = runtime.Run(TestModels.Values(x), 4);
        double scale = Math.Max(1, expected.Max(v => Math.Abs((double)v)));
        actual.Zip(expected).Should().OnlyContain(p => Math.Abs(p.First - p.Second) <= 1e-4 * scale);
    }

    private sealed class Custom() : nn.Module<Tensor, Tensor>("custom")
    {
        public override Tensor forward(Tensor input) => input * 2;
    }
}
