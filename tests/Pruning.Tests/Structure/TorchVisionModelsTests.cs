using Pruning.Export;
using Pruning.Sparse;
using Pruning.Sparse.Layers;
using Pruning.Structure;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Tests.Structure;

/// <summary>TorchVision's own models, written as Module classes with hand-written forwards: traced, grouped, shrunk, exported.</summary>
[Collection(TorchCollection.Name)]
public sealed class TorchVisionModelsTests
{
    public static TheoryData<string, int, int> Models => new()
    {
        { "resnet50", 37, 64 },       // bottlenecks: the stem, 4 stages across their adds, 2 inner groups in each of 16 blocks
        { "mobilenet_v2", 25, 64 },   // inverted residuals: depthwise layers follow their expansion, adds tie the projections
        { "googlenet", 57, 64 },      // Inception: every branch of every concatenation is a group of its own
        { "inception_v3", 94, 96 },   // pooled branches pooled in forward, concatenations nested inside concatenations
    };

    private static nn.Module<Tensor, Tensor> Build(string name) => name switch
    {
        "resnet50" => torchvision.models.resnet50(num_classes: 10),
        "mobilenet_v2" => torchvision.models.mobilenet_v2(num_classes: 10),
        "googlenet" => torchvision.models.googlenet(num_classes: 10),
        "inception_v3" => torchvision.models.inception_v3(num_classes: 10),
        "resnext50_32x4d" => torchvision.models.resnext50_32x4d(num_classes: 10),
        _ => throw new ArgumentException(name, nameof(name)),
    };

    private static void ShouldMatch(float[] expected, float[] actual, double tolerance)
    {
        double scale = expected.Max(v => Math.Abs((double)v));
        scale.Should().BeGreaterThan(0);
        actual.Zip(expected).Max(p => Math.Abs((double)p.First - p.Second)).Should().BeLessThanOrEqualTo(tolerance * scale);
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void A_torchvision_model_is_grouped_shrunk_to_its_masked_outputs_and_runs_on_the_runtime_and_in_onnx_runtime(string name, int groups, int size)
    {
        torch.manual_seed(13);
        var model = ChannelGraphTests.Warm(Build(name), [4, 3, size, size]);
        using var x = torch.randn(2, 3, size, size);
        var graph = ChannelGraph.Trace(model, x);
        graph.Groups.Should().HaveCount(groups);
        graph.Kept.Keys.Should().Equal(graph.Kept.Keys.Where(k => graph.Kept[k] == "the model's output"), "only the classifier's outputs are kept whole");
        long dense = graph.Macs(), parameters = model.parameters().Sum(p => p.numel());

        ChannelGraphTests.PruneGroups(model, graph, 0.3);
        using var noGrad = torch.no_grad();
        float[] masked = TestModels.Values(model.call(x));
        graph.ShrinkInPlace();
        ShouldMatch(masked, TestModels.Values(model.call(x)), 1e-5);
        model.parameters().Sum(p => p.numel()).Should().BeLessThan(parameters * 6 / 10);
        ChannelGraph.Trace(model, x).Macs().Should().BeLessThan(dense * 6 / 10);

        SparseModel runtime = SparseExport.ToSparseModel(model, new FeatureShape(3, size, size));
        ShouldMatch(masked, runtime.Run(TestModels.Values(x), 2), 1e-4);
        var (onnx, _) = Export.OnnxExportTests.RunOrt(OnnxExport.ToBytes(model, new FeatureShape(3, size, size)), x);
        ShouldMatch(masked, onnx, 1e-4);
    }

    [Fact]
    public void ResNeXt_keeps_the_channels_of_its_grouped_convolutions_and_says_why()
    {
        torch.manual_seed(14);
        var model = Build("resnext50_32x4d");
        var graph = ChannelGraph.Trace(model, torch.randn(1, 3, 32, 32));
        graph.Groups.Should().HaveCount(5, "the stem and the four stages; every block's inner channels meet a grouped convolution");
        graph.Kept.Should().ContainKey("layer2.1.conv2").WhoseValue.Should().Be("'layer2.1.conv2' is a grouped convolution (groups = 32) that is not depthwise");
        graph.Kept.Should().ContainKey("layer2.1.conv1", "its outputs are the grouped convolution's inputs");
    }

    [Fact]
    public void MobileNetV3_is_grouped_through_its_squeeze_and_excitation_and_a_shrink_its_blocks_refuse_leaves_it_whole()
    {
        torch.manual_seed(15);
        var model = ChannelGraphTests.Warm(torchvision.models.mobilenet_v3_small(), [4, 3, 64, 64]);
        using var x = torch.randn(2, 3, 64, 64);
        var graph = ChannelGraph.Trace(model, x);
        // The excitation's second layer writes the channels it scales: it is a producer of their group.
        graph.Groups.Should().Contain(g => g.Producers.SequenceEqual(new[] { "features.0.0", "features.1.block.1.fc2" }));
        graph.Groups.Should().HaveCount(27);
        ChannelGraphTests.PruneGroups(model, graph, 0.3);

        using var noGrad = torch.no_grad();
        float[] masked = TestModels.Values(model.call(x));
        FluentActions.Invoking(graph.ShrinkInPlace).Should().Throw<NotSupportedException>().WithMessage("*put back*SqueezeExcitation*");
        TestModels.Values(model.call(x)).Should().Equal(masked, "the failed shrink restored every module");

        var (onnx, _) = Export.OnnxExportTests.RunOrt(OnnxExport.ToBytes(model, new FeatureShape(3, 64, 64)), x);
        ShouldMatch(masked, onnx, 1e-4);
        // Masked (not shrunk) and then pruned by weights, it runs on the sparse runtime: Hardswish, Hardsigmoid and the scaling.
        using (var pruner = new GradualPruner(model, new PruningOptions { Schedule = new Pruning.Scheduling.OneShotSchedule(0.8) }))
        {
            pruner.Step();
            pruner.Strip();
        }
        SparseModel runtime = SparseExport.ToSparseModel(model, new FeatureShape(3, 64, 64));
        LayerChains.All(runtime.Layers).OfType<ScaleLayer>().Should().HaveCount(9, "one per squeeze-and-excitation block");
        ShouldMatch(TestModels.Values(model.call(x)), runtime.Run(TestModels.Values(x), 2), 1e-4);
    }
}
