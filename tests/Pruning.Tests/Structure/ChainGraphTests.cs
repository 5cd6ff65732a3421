using Pruning.Criteria;
using Pruning.Export;
using Pruning.Sparse;
using Pruning.Sparse.Layers;
using Pruning.Grouping;
using Pruning.Scheduling;
using Pruning.Selection;
using Pruning.Structure;
using Pruning.Targets;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Structure;

/// <summary>A Sequential chain, the trivial case of the traced channel graph: groups, slimming, shrinking, costs.</summary>
[Collection(TorchCollection.Name)]
public sealed class ChainGraphTests
{
    /// <summary>conv(1→8)-bn-relu-pool, conv(8→12)-bn-relu, flatten, fc(12·4·4→16)-relu, fc(16→10), on 12×12 inputs.</summary>
    private static Sequential Cnn(int seed)
    {
        torch.manual_seed(seed);
        var model = nn.Sequential(
            ("conv1", nn.Conv2d(1, 8, 3, padding: 1)), ("bn1", nn.BatchNorm2d(8)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(8, 12, 3)), ("bn2", nn.BatchNorm2d(12)), ("relu2", nn.ReLU()),
            ("flat", nn.Flatten()), ("fc1", nn.Linear(12 * 4 * 4, 16)), ("relu3", nn.ReLU()), ("fc2", nn.Linear(16, 10)));
        // Give the BatchNorms real running statistics and scales.
        using (torch.no_grad())
        {
            for (int i = 0; i < 5; i++) model.call(torch.randn(16, 1, 12, 12));
            model.get_parameter("bn1.weight")!.copy_(torch.rand(8) + 0.1);
            model.get_parameter("bn2.weight")!.copy_(torch.rand(12) + 0.1);
            model.get_parameter("bn1.bias")!.copy_(torch.randn(8) * 0.1);
            model.get_parameter("bn2.bias")!.copy_(torch.randn(12) * 0.1);
        }
        model.eval();
        return model;
    }

    private static ChannelGraph Trace(nn.Module<Tensor, Tensor> model, params long[] sample)
    {
        using var example = torch.randn([2, .. sample]);
        return ChannelGraph.Trace(model, example);
    }

    [Fact]
    public void A_chain_has_one_group_per_layer_with_its_batchnorm_and_reader()
    {
        var graph = Trace(Cnn(1), 1, 12, 12);
        graph.Groups.Select(ChannelGraphTests.Describe).Should().Equal("8: conv1 | bn1 | conv2", "12: conv2 | bn2 | fc1", "16: fc1 |  | fc2");
        graph.Kept.Should().ContainKey("fc2").WhoseValue.Should().Be("the model's output");
        // fc1 reads conv2's 12 channels flattened, 16 inputs each: a LatencyTable prices it as 12 channels of 16.
        graph.PricedLayers().Select(l => (l.Name, l.InChannels, l.OutChannels, l.PerChannel)).Should().Equal(
            ("conv1", 1L, 8L, 1L), ("conv2", 8L, 12L, 1L), ("fc1", 12L, 16L, 16L), ("fc2", 16L, 10L, 1L));
    }

    [Fact]
    public void What_a_chain_cannot_prune_is_kept_with_the_reason()
    {
        var sigmoid = nn.Sequential(("fc1", nn.Linear(4, 4)), ("gate", nn.Sigmoid()), ("fc2", nn.Linear(4, 2)));
        Trace(sigmoid, 4).Kept.Should().ContainKey("fc1").WhoseValue.Should().Contain("'gate' is a Sigmoid");
        var grouped = nn.Sequential(("conv", nn.Conv2d(4, 8, 3, groups: 2)), ("conv2", nn.Conv2d(8, 8, 1)), ("conv3", nn.Conv2d(8, 2, 1)));
        var graph = Trace(grouped, 4, 5, 5);
        graph.Kept.Should().ContainKey("conv").WhoseValue.Should().Contain("grouped convolution (groups = 2)");
        graph.Groups.Select(g => g.Weight).Should().Equal("conv2.weight");
    }

    [Fact]
    public void BatchNormScaling_PrunesTheSmallestGammaChannels_AndTheirCoupledParameters()
    {
        var model = Cnn(2);
        float[] gamma = [0.9f, 0.05f, 0.7f, 0.01f, 0.8f, 0.3f, 0.02f, 0.6f];
        using (torch.no_grad()) model.get_parameter("bn1.weight")!.copy_(torch.tensor(gamma));
        var channels = Trace(model, 1, 12, 12);
        using var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(0.5),
            Targets = PruningTargets.Default.Include("conv1.weight"),
            Granularity = PruningGranularity.OutputChannels(),
            Criterion = new BatchNormScalingCriterion(channels),
            Channels = channels,
        });
        pruner.Step();

        int[] prunedChannels = [1, 3, 5, 6];
        float[] filters = TestModels.Values(model.get_parameter("conv1.weight")!);
        foreach (string coupled in new[] { "conv1.bias", "bn1.weight", "bn1.bias" })
        {
            float[] values = TestModels.Values(model.get_parameter(coupled)!);
            prunedChannels.Should().OnlyContain(c => values[c] == 0, coupled);
        }
        for (int c = 0; c < 8; c++)
            filters.Skip(c * 9).Take(9).All(v => v == 0).Should().Be(prunedChannels.Contains(c), $"filter {c}");
        TestModels.Values(model.get_parameter("bn1.weight")!).Where((_, c) => !prunedChannels.Contains(c)).Should().Equal(0.9f, 0.7f, 0.8f, 0.6f);
    }

    [Fact]
    public void GlobalSlimming_PrunesTheSmallestGammasAcrossLayers()
    {
        var model = Cnn(6);
        float[] gamma1 = [0.9f, 0.05f, 0.7f, 0.01f, 0.8f, 0.3f, 0.02f, 0.6f];
        float[] gamma2 = [0.5f, 0.04f, 0.45f, 0.03f, 0.35f, 0.4f, 0.06f, 0.55f, 0.65f, 0.75f, 0.85f, 0.95f];
        using (torch.no_grad())
        {
            model.get_parameter("bn1.weight")!.copy_(torch.tensor(gamma1));
            model.get_parameter("bn2.weight")!.copy_(torch.tensor(gamma2));
        }
        var channels = Trace(model, 1, 12, 12);
        using var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(0.3),
            Scope = PruningScope.Global,
            Targets = PruningTargets.Default.Include("conv1.weight", "conv2.weight"),
            Granularity = PruningGranularity.OutputChannels(LpNorm.LInfinity),
            Criterion = new BatchNormScalingCriterion(channels),
            Channels = channels,
        });
        pruner.Step();

        // 30 % of 20 channels = 6: the six smallest γ overall are 0.01, 0.02, 0.05 (bn1) and 0.03, 0.04, 0.06 (bn2).
        TestModels.Values(model.get_parameter("bn1.weight")!).Select((g, c) => (g, c)).Where(p => p.g == 0).Select(p => p.c).Should().Equal(1, 3, 6);
        TestModels.Values(model.get_parameter("bn2.weight")!).Select((g, c) => (g, c)).Where(p => p.g == 0).Select(p => p.c).Should().Equal(1, 3, 6);
    }

    [Fact]
    public void Shrinking_gives_a_smaller_model_with_the_same_outputs()
    {
        var model = Cnn(3);
        var channels = Trace(model, 1, 12, 12);
        TestModels.PruneChannels(model, channels, 0.5, "conv1.weight", "conv2.weight", "fc1.weight");
        using var x = torch.randn(32, 1, 12, 12);
        float[] expected = TestModels.Values(model.call(x));
        long Count(nn.Module m) => m.parameters().Sum(p => p.numel());
        long before = Count(model);

        channels.ShrinkInPlace();

        TestModels.Values(model.call(x)).Zip(expected).Should().OnlyContain(p => Math.Abs(p.First - p.Second) <= 1e-5f);
        model.get_parameter("conv1.weight")!.shape.Should().Equal(4, 1, 3, 3);
        model.get_parameter("conv2.weight")!.shape.Should().Equal(6, 4, 3, 3);
        model.get_parameter("bn2.running_mean").Should().BeNull("running statistics are buffers, not parameters");
        model.get_parameter("fc1.weight")!.shape.Should().Equal(8, 6 * 16);
        model.get_parameter("fc2.weight")!.shape.Should().Equal(10, 8);
        Count(model).Should().Be(4 * 9 + 4 + 8 + 6 * 4 * 9 + 6 + 12 + 8 * 96 + 8 + 10 * 8 + 10);
        Count(model).Should().BeLessThan(before / 2);
    }

    [Fact]
    public void Shrinking_without_coupled_masks_keeps_channels_that_still_output_something()
    {
        var model = Cnn(4);
        var channels = Trace(model, 1, 12, 12);
        using (var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(0.5),
            Targets = PruningTargets.Default.Include("conv1.weight"),
            Granularity = PruningGranularity.OutputChannels(),
        }))
            pruner.Step();
        using var x = torch.randn(8, 1, 12, 12);
        float[] expected = TestModels.Values(model.call(x));

        channels.ShrinkInPlace();

        model.get_parameter("conv1.weight")!.shape.Should().Equal([8L, 1, 3, 3], "zero filters still output the BatchNorm shift");
        TestModels.Values(model.call(x)).Zip(expected).Should().OnlyContain(p => Math.Abs(p.First - p.Second) <= 1e-5f);
    }

    [Fact]
    public void BatchNormL1Penalty_IsLambdaTimesTheSumOfAbsoluteScales()
    {
        var model = Cnn(5);
        float expected = 1e-3f * (TestModels.Values(model.get_parameter("bn1.weight")!).Sum(Math.Abs) + TestModels.Values(model.get_parameter("bn2.weight")!).Sum(Math.Abs));
        var penalty = Trace(model, 1, 12, 12).BatchNormL1Penalty(1e-3);
        penalty.item<float>().Should().BeApproximately(expected, 1e-6f);
        penalty.backward();
        TestModels.Values(model.get_parameter("bn1.weight")!.grad!).Should().OnlyContain(g => Math.Abs(Math.Abs(g) - 1e-3f) < 1e-7f, "d|γ|/dγ = sign(γ)");
    }

    /// <summary>MobileNet-style: conv, then two depthwise-separable blocks (depthwise 3×3 + BN + ReLU6, pointwise 1×1 + BN).</summary>
    private static Sequential MobileNetLike(int seed)
    {
        torch.manual_seed(seed);
        var model = nn.Sequential(
            ("conv1", nn.Conv2d(1, 8, 3, stride: 2, padding: 1, bias: false)), ("bn1", nn.BatchNorm2d(8)), ("relu1", nn.ReLU6()),
            ("dw1", nn.Conv2d(8, 8, 3, padding: 1, groups: 8, bias: false)), ("dwbn1", nn.BatchNorm2d(8)), ("dwrelu1", nn.ReLU6()),
            ("pw1", nn.Conv2d(8, 16, 1, bias: false)), ("pwbn1", nn.BatchNorm2d(16)), ("pwrelu1", nn.ReLU6()),
            ("dw2", nn.Conv2d(16, 16, 3, stride: 2, padding: 1, groups: 16)), ("dwbn2", nn.BatchNorm2d(16)), ("dwrelu2", nn.ReLU6()),
            ("pw2", nn.Conv2d(16, 24, 1, bias: false)), ("pwbn2", nn.BatchNorm2d(24)), ("pwrelu2", nn.ReLU6()),
            ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(24, 10)));
        using (torch.no_grad())
        {
            for (int i = 0; i < 5; i++) model.call(torch.randn(16, 1, 16, 16));
            foreach (var (name, p) in model.named_parameters().Where(p => p.name.Contains("bn")))
                p.copy_(name.EndsWith("weight", StringComparison.Ordinal) ? torch.rand(p.shape) + 0.1 : torch.randn(p.shape) * 0.1);
        }
        model.eval();
        return model;
    }

    [Fact]
    public void Depthwise_convolutions_are_pruned_and_removed_with_the_channels_they_carry()
    {
        var model = MobileNetLike(4);
        var channels = Trace(model, 1, 16, 16);
        channels.Groups.Select(ChannelGraphTests.Describe).Should().Equal(
            "8: conv1 | bn1,dw1,dwbn1 | pw1", "16: pw1 | pwbn1,dw2,dwbn2 | pw2", "24: pw2 | pwbn2 | fc");
        // Its MACs at half of every group, by hand: conv1 1·4·9·64, dw1 4·9·64, pw1 4·8·64, dw2 8·9·16, pw2 8·12·16, fc 12·10.
        long halfMacs = 4 * 9 * 64 + 4 * 9 * 64 + 4 * 8 * 64 + 8 * 9 * 16 + 8 * 12 * 16 + 12 * 10;
        channels.Macs(0.5).Should().Be(halfMacs);
        // A latency table prices the depthwise layers too, at their group's channels.
        var table = Pruning.Analysis.LatencyTable.MeasureDense(channels, runs: 1);
        table.Layers.Select(l => (l.Name, l.InChannels, l.OutChannels)).Should().Contain(("dw1.weight", 8L, 8L)).And.Contain(("dw2.weight", 16L, 16L));
        table.ChannelMilliseconds(channels, new Dictionary<string, long> { ["conv1.weight"] = 4 }).Should().BeGreaterThan(0);

        TestModels.PruneChannels(model, channels, 0.5, "conv1.weight", "pw1.weight", "pw2.weight");
        // The masked model: a pruned channel of conv1 has its depthwise filter, the depthwise BatchNorm's scale and shift zero.
        float[] bn1 = TestModels.Values(model.get_parameter("bn1.weight")!);
        float[] dw1 = TestModels.Values(model.get_parameter("dw1.weight")!);
        float[] dwbn1 = TestModels.Values(model.get_parameter("dwbn1.weight")!);
        int[] dead = Enumerable.Range(0, 8).Where(c => bn1[c] == 0).ToArray();
        dead.Should().HaveCount(4);
        dead.Should().OnlyContain(c => dw1.Skip(c * 9).Take(9).All(v => v == 0) && dwbn1[c] == 0);
        Enumerable.Range(0, 16).Count(c => TestModels.Values(model.get_parameter("dw2.bias")!)[c] == 0).Should().Be(8);
        using var x = torch.randn(6, 1, 16, 16);
        float[] expected = TestModels.Values(model.call(x));

        channels.ShrinkInPlace();

        TestModels.Values(model.call(x)).Zip(expected).Should().OnlyContain(p => Math.Abs(p.First - p.Second) <= 1e-5f);
        var dw = model.named_children().Where(c => c.name.StartsWith("dw", StringComparison.Ordinal) && c.module is Conv2d).Select(c => (Conv2d)c.module).ToArray();
        dw.Select(c => (c.in_channels, c.out_channels, c.groups)).Should().Equal((4L, 4L, 4L), (8L, 8L, 8L));
        model.get_parameter("pw2.weight")!.shape.Should().Equal(12, 8, 1, 1);
        model.get_parameter("fc.weight")!.shape.Should().Equal(10, 12);
        Trace(model, 1, 16, 16).Macs().Should().Be(halfMacs, "the shrunk model, traced again, costs what the graph said");

        // Prune it, then run it: the shrunk depthwise network on the sparse runtime gives the same outputs.
        SparseModel runtime = SparseExport.ToSparseModel(model, new FeatureShape(1, 16, 16));
        float[] actual = runtime.Run(TestModels.Values(x), 6);
        actual.Zip(expected).Should().OnlyContain(p => Math.Abs(p.First - p.Second) <= 1e-4f);
    }

    [Fact]
    public void Declared_residual_blocks_are_traced_and_their_adds_tie_the_channels_on_either_side()
    {
        var model = Pruning.Tests.Export.OnnxExportTests.SmallResNet(22);
        var channels = Trace(model, 1, 28, 28);
        channels.Groups.Select(ChannelGraphTests.Describe).Should().Equal(
            "8: stem+block1.main.conv2 | stem_bn,block1.main.bn2 | block1.main.conv1,block2.main.conv1,block2.shortcut.conv",
            "8: block1.main.conv1 | block1.main.bn1 | block1.main.conv2",
            "16: block2.main.conv1 | block2.main.bn1 | block2.main.conv2",
            "16: block2.main.conv2+block2.shortcut.conv | block2.main.bn2,block2.shortcut.bn | fc");
        TestModels.PruneChannels(model, channels, 0.5, [.. channels.Weights]);
        using var x = torch.randn(5, 1, 28, 28);
        float[] expected = TestModels.Values(model.call(x));

        channels.ShrinkInPlace();

        model.get_parameter("stem.weight")!.shape.Should().Equal(4, 1, 3, 3);
        model.get_parameter("block1.main.conv1.weight")!.shape.Should().Equal(4, 4, 3, 3);
        model.get_parameter("block1.main.conv2.weight")!.shape.Should().Equal(4, 4, 3, 3);
        model.get_parameter("block2.main.conv2.weight")!.shape.Should().Equal(8, 8, 3, 3);
        model.get_parameter("block2.shortcut.conv.weight")!.shape.Should().Equal(8, 4, 1, 1);
        TestModels.Values(model.call(x)).Zip(expected).Should().OnlyContain(p => Math.Abs(p.First - p.Second) <= 1e-5f);
        float[] runtime = SparseExport.ToSparseModel(model, new FeatureShape(1, 28, 28)).Run(TestModels.Values(x), 5);
        runtime.Zip(expected).Should().OnlyContain(p => Math.Abs(p.First - p.Second) <= 1e-4f);
    }
}
