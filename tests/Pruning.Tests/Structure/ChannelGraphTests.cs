using Pruning.Grouping;
using Pruning.Scheduling;
using Pruning.Structure;
using Pruning.Targets;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Structure;

[Collection(TorchCollection.Name)]
public sealed class ChannelGraphTests
{
    /// <summary>A user's basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), with functional ReLUs and add.</summary>
    internal sealed class BasicBlock : nn.Module<Tensor, Tensor>
    {
        private readonly Conv2d conv1;
        private readonly BatchNorm2d bn1;
        private readonly Conv2d conv2;
        private readonly BatchNorm2d bn2;
        private readonly Sequential? down;

        public BasicBlock(long inputs, long outputs, long stride) : base(nameof(BasicBlock))
        {
            conv1 = nn.Conv2d(inputs, outputs, 3, stride: stride, padding: 1, bias: false);
            bn1 = nn.BatchNorm2d(outputs);
            conv2 = nn.Conv2d(outputs, outputs, 3, padding: 1, bias: false);
            bn2 = nn.BatchNorm2d(outputs);
            if (stride != 1 || inputs != outputs)
                down = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride: stride, bias: false), nn.BatchNorm2d(outputs));
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = torch.NewDisposeScope();
            Tensor y = bn2.call(conv2.call(nn.functional.relu(bn1.call(conv1.call(x)))));
            Tensor s = down is null ? x : down.call(x);
            return nn.functional.relu(y + s).MoveToOuterDisposeScope();
        }
    }

    /// <summary>A bottleneck: 1×1 down to a quarter, 3×3, 1×1 back up, identity shortcut, written with in-place ops.</summary>
    internal sealed class Bottleneck : nn.Module<Tensor, Tensor>
    {
        private readonly Sequential body;

        public Bottleneck(long channels) : base(nameof(Bottleneck))
        {
            long inner = channels / 4;
            body = nn.Sequential(
                ("conv1", nn.Conv2d(channels, inner, 1, bias: false)), ("bn1", nn.BatchNorm2d(inner)), ("relu1", nn.ReLU()),
                ("conv2", nn.Conv2d(inner, inner, 3, padding: 1, bias: false)), ("bn2", nn.BatchNorm2d(inner)), ("relu2", nn.ReLU()),
                ("conv3", nn.Conv2d(inner, channels, 1, bias: false)), ("bn3", nn.BatchNorm2d(channels)));
            RegisterComponents();
        }

        public override Tensor forward(Tensor x) => body.call(x).add_(x).relu_();
    }

    /// <summary>Two branches concatenated along channels, then read by one convolution.</summary>
    internal sealed class Branches : nn.Module<Tensor, Tensor>
    {
        private readonly Sequential left, right;

        public Branches(long inputs) : base(nameof(Branches))
        {
            left = nn.Sequential(("conv", nn.Conv2d(inputs, 4, 1)), ("bn", nn.BatchNorm2d(4)), ("relu", nn.ReLU()));
            right = nn.Sequential(("conv", nn.Conv2d(inputs, 6, 3, padding: 1)), ("bn", nn.BatchNorm2d(6)), ("relu", nn.ReLU()));
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using Tensor a = left.call(x), b = right.call(x);
            return torch.cat([a, b], 1);
        }
    }

    /// <summary>Squeeze-and-excitation as users write it: x · sigmoid(fc2(relu(fc1(mean over H, W of x)))), 1×1 convolutions.</summary>
    internal sealed class Excitation : nn.Module<Tensor, Tensor>
    {
        private readonly Conv2d fc1, fc2;
        private readonly Sigmoid gate = nn.Sigmoid();

        public Excitation(long channels, long squeezed) : base(nameof(Excitation))
        {
            fc1 = nn.Conv2d(channels, squeezed, 1);
            fc2 = nn.Conv2d(squeezed, channels, 1);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = torch.NewDisposeScope();
            Tensor s = gate.call(fc2.call(nn.functional.relu(fc1.call(x.mean([2, 3], keepdim: true)))));
            return (x * s).MoveToOuterDisposeScope();
        }
    }

    /// <summary>A module whose forward scales a tensor between two layers: an operation the trace cannot see.</summary>
    internal sealed class Scaled : nn.Module<Tensor, Tensor>
    {
        private readonly Conv2d conv1 = nn.Conv2d(1, 4, 3), conv2 = nn.Conv2d(4, 4, 3);

        public Scaled() : base(nameof(Scaled)) => RegisterComponents();

        public override Tensor forward(Tensor x)
        {
            using Tensor y = conv1.call(x), scaled = y * 2;
            return conv2.call(scaled);
        }
    }

    internal static Sequential TinyResNet(int seed)
    {
        torch.manual_seed(seed);
        var model = nn.Sequential(
            ("stem", nn.Conv2d(1, 8, 3, padding: 1, bias: false)), ("stem_bn", nn.BatchNorm2d(8)), ("stem_relu", nn.ReLU()),
            ("block1", new BasicBlock(8, 8, 1)), ("block2", new BasicBlock(8, 16, 2)),
            ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(16, 10)));
        return Warm(model, [8, 1, 12, 12]);
    }

    /// <summary>Running statistics from a few batches and BatchNorm scales away from 1, then eval mode.</summary>
    internal static T Warm<T>(T model, long[] shape) where T : nn.Module<Tensor, Tensor>
    {
        model.train();
        using (torch.no_grad())
        {
            for (int i = 0; i < 4; i++) model.call(torch.randn(shape) * 2 + 0.5);
            foreach (var (name, p) in model.named_parameters())
                if (name.Contains("bn", StringComparison.Ordinal) || name.Contains("downsample.1", StringComparison.Ordinal) || name.Contains("down.1", StringComparison.Ordinal))
                    p.copy_(name.EndsWith("weight", StringComparison.Ordinal) ? torch.rand(p.shape) + 0.2 : torch.randn(p.shape) * 0.2);
        }
        model.eval();
        return model;
    }

    internal static string Describe(ChannelGroup g) =>
        $"{g.Channels}: {string.Join("+", g.Producers)} | {string.Join(",", g.ChannelWise)} | {string.Join(",", g.Consumers.Order(StringComparer.Ordinal))}";

    internal static void PruneGroups(nn.Module model, ChannelGraph graph, double sparsity)
    {
        using var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(sparsity),
            Targets = PruningTargets.Default.Include([.. graph.Weights]),
            Granularity = PruningGranularity.OutputChannels(),
            Channels = graph,
        });
        pruner.Step();
        pruner.Strip();
    }

    /// <summary>Prunes every group, shrinks in place, and checks the outputs against the masked model's.</summary>
    private static (float[] Masked, float[] Shrunk) PruneAndShrink(nn.Module<Tensor, Tensor> model, Tensor x, double sparsity)
    {
        var graph = ChannelGraph.Trace(model, x);
        PruneGroups(model, graph, sparsity);
        using var noGrad = torch.no_grad();
        float[] masked = TestModels.Values(model.call(x));
        graph.ShrinkInPlace();
        float[] shrunk = TestModels.Values(model.call(x));
        return (masked, shrunk);
    }

    private static void ShouldMatch(float[] expected, float[] actual, double tolerance)
    {
        double scale = Math.Max(1, expected.Max(v => Math.Abs((double)v)));
        actual.Should().HaveCount(expected.Length);
        actual.Zip(expected).Max(p => Math.Abs((double)p.First - p.Second)).Should().BeLessThanOrEqualTo(tolerance * scale);
    }

    [Fact]
    public void A_basic_block_ties_the_add_inputs_into_one_group()
    {
        var model = TinyResNet(1);
        var graph = ChannelGraph.Trace(model, torch.randn(2, 1, 12, 12));

        graph.Groups.Select(Describe).Should().Equal(
            "8: stem+block1.conv2 | stem_bn,block1.bn2 | block1.conv1,block2.conv1,block2.down.0",
            "8: block1.conv1 | block1.bn1 | block1.conv2",
            "16: block2.conv1 | block2.bn1 | block2.conv2",
            "16: block2.conv2+block2.down.0 | block2.bn2,block2.down.1 | fc");
        graph.Weights.Should().Equal("stem.weight", "block1.conv1.weight", "block2.conv1.weight", "block2.conv2.weight");
        graph.Kept.Should().ContainKey("fc").WhoseValue.Should().Be("the model's output");
        graph.Kept.Should().HaveCount(1);
        model.training.Should().BeFalse("the trace restores the mode it found");
    }

    [Fact]
    public void A_bottleneck_with_in_place_add_and_relu_is_one_group_with_the_layer_before_it()
    {
        torch.manual_seed(2);
        var model = nn.Sequential(("stem", nn.Conv2d(3, 16, 3, padding: 1)), ("relu", nn.ReLU()), ("block", new Bottleneck(16)),
            ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(16, 4)));
        model.train();
        var graph = ChannelGraph.Trace(model, torch.randn(2, 3, 8, 8));

        graph.Groups.Select(Describe).Should().Equal(
            "16: stem+block.body.conv3 | block.body.bn3 | block.body.conv1,fc",
            "4: block.body.conv1 | block.body.bn1 | block.body.conv2",
            "4: block.body.conv2 | block.body.bn2 | block.body.conv3");
        model.training.Should().BeTrue("the trace restores the mode it found");
    }

    [Fact]
    public void Concatenated_branches_keep_their_own_groups_and_the_reader_loses_the_matching_inputs()
    {
        torch.manual_seed(3);
        var model = nn.Sequential(("stem", nn.Conv2d(3, 8, 3, padding: 1)), ("relu", nn.ReLU()), ("mix", new Branches(8)),
            ("conv", nn.Conv2d(10, 5, 3, padding: 1)), ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(5, 3)));
        Warm(model, [4, 3, 8, 8]);
        using var x = torch.randn(2, 3, 8, 8);
        var graph = ChannelGraph.Trace(model, x);

        graph.Groups.Select(Describe).Should().Equal(
            "8: stem |  | mix.left.conv,mix.right.conv",
            "4: mix.left.conv | mix.left.bn | conv",
            "6: mix.right.conv | mix.right.bn | conv",
            "5: conv |  | fc");

        var (masked, shrunk) = PruneAndShrink(model, x, 0.5);
        ShouldMatch(masked, shrunk, 1e-5);
        var conv = (Conv2d)model.named_modules().First(m => m.name == "conv").module;
        conv.in_channels.Should().Be(2 + 3, "half of each branch is gone from the concatenation it reads");
        conv.weight!.shape.Should().Equal(3, 5, 3, 3);
    }

    [Fact]
    public void A_depthwise_convolution_follows_the_group_of_its_input()
    {
        torch.manual_seed(4);
        var model = nn.Sequential(
            ("conv", nn.Conv2d(3, 8, 3, padding: 1, bias: false)), ("bn", nn.BatchNorm2d(8)), ("relu", nn.ReLU6()),
            ("dw", nn.Conv2d(8, 8, 3, padding: 1, groups: 8, bias: false)), ("dw_bn", nn.BatchNorm2d(8)), ("dw_relu", nn.ReLU6()),
            ("pw", nn.Conv2d(8, 12, 1, bias: false)), ("pw_bn", nn.BatchNorm2d(12)), ("pw_relu", nn.ReLU6()),
            ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(12, 4)));
        Warm(model, [4, 3, 8, 8]);
        using var x = torch.randn(2, 3, 8, 8);
        var graph = ChannelGraph.Trace(model, x);

        graph.Groups.Select(Describe).Should().Equal("8: conv | bn,dw,dw_bn | pw", "12: pw | pw_bn | fc");
        long dense = graph.Macs();
        dense.Should().Be(8 * 8 * (9 * 3 * 8 + 9 * 8 + 8 * 12) + 12 * 4);
        graph.Macs(0.5).Should().Be(8 * 8 * (9 * 3 * 4 + 9 * 4 + 4 * 6) + 6 * 4);
        graph.WeightCount().Should().Be(9 * 3 * 8 + 9 * 8 + 8 * 12 + 12 * 4);
        graph.WeightCount(0.5).Should().Be(9 * 3 * 4 + 9 * 4 + 4 * 6 + 6 * 4);

        var (masked, shrunk) = PruneAndShrink(model, x, 0.5);
        ShouldMatch(masked, shrunk, 1e-5);
        var dw = (Conv2d)model.named_modules().First(m => m.name == "dw").module;
        (dw.groups, dw.in_channels, dw.out_channels).Should().Be((4L, 4L, 4L));
        ChannelGraph.Trace(model, x).Macs().Should().Be(graph.Macs(0.5), "the shrunk model traces to the MACs predicted for it");
        model.parameters().Where(p => p.dim() >= 2).Sum(p => p.numel()).Should().Be(graph.WeightCount(0.5));
    }

    [Fact]
    public void Group_importance_scores_every_layer_of_a_group_not_only_the_first()
    {
        var model = TinyResNet(5);
        using (torch.no_grad())
        {
            // Alone, the stem would lose channels 0–3 (smallest filters); block1.conv2's filter 0 is by far its largest,
            // so the group keeps channel 0 and loses 1–4 instead.
            var stem = model.get_parameter("stem.weight")!;
            var conv2 = model.get_parameter("block1.conv2.weight")!;
            for (int c = 0; c < 8; c++)
            {
                stem[c].fill_((c + 1) / 9.0f);
                conv2[c].fill_(c == 0 ? 100f / 72 : 1f / 72);
            }
        }
        var graph = ChannelGraph.Trace(model, torch.randn(2, 1, 12, 12));
        PruneGroups(model, graph, 0.5);

        bool[] Alive(string name)
        {
            var p = model.get_parameter(name)!;
            return TestModels.Values(p.detach().reshape(p.shape[0], -1).abs().sum(1)).Select(v => v != 0).ToArray();
        }
        bool[] expected = [true, false, false, false, false, true, true, true];
        Alive("stem.weight").Should().Equal(expected);
        Alive("block1.conv2.weight").Should().Equal(expected, "every producer of the group follows one mask");
        TestModels.Values(model.get_parameter("block1.bn2.weight")!).Select(v => v != 0).Should().Equal(expected);
        TestModels.Values(model.get_parameter("stem_bn.bias")!).Select(v => v != 0).Should().Equal(expected);
    }

    [Fact]
    public void A_pruned_resnet_of_user_blocks_shrinks_in_place_to_the_masked_outputs()
    {
        var model = TinyResNet(6);
        using var x = torch.randn(4, 1, 12, 12);
        long before = model.parameters().Sum(p => p.numel());
        var (masked, shrunk) = PruneAndShrink(model, x, 0.5);

        ShouldMatch(masked, shrunk, 1e-5);
        var block2 = model.named_modules().ToDictionary(m => m.name, m => m.module);
        ((Conv2d)block2["stem"]).out_channels.Should().Be(4);
        ((Conv2d)block2["block2.down.0"]).weight!.shape.Should().Equal(8, 4, 1, 1);
        ((BatchNorm2d)block2["block2.bn2"]).num_features.Should().Be(8);
        ((Linear)block2["fc"]).in_features.Should().Be(8);
        long after = model.parameters().Sum(p => p.numel());
        after.Should().BeLessThan(before * 35 / 100, "half the channels of every conv leave about a quarter of its weights");
        // It trains on: a forward and backward in train mode with the new shapes.
        model.train();
        var loss = model.call(x).sum();
        loss.backward();
    }

    [Fact]
    public void TorchVision_resnet18_is_traced_grouped_and_shrunk_to_the_masked_outputs()
    {
        torch.manual_seed(7);
        var model = Warm(torchvision.models.resnet18(num_classes: 10), [4, 3, 32, 32]);
        using var x = torch.randn(2, 3, 32, 32);
        var graph = ChannelGraph.Trace(model, x);

        graph.Groups.Should().HaveCount(4 + 8, "one group per stage across its adds, and one inside every block");
        graph.Groups[0].Producers.Should().Equal("conv1", "layer1.0.conv2", "layer1.1.conv2");
        graph.Groups.Select(Describe).Should().Contain(
            "128: layer2.0.conv2+layer2.0.downsample.0+layer2.1.conv2 | layer2.0.bn2,layer2.0.downsample.1,layer2.1.bn2 | layer2.1.conv1,layer3.0.conv1,layer3.0.downsample.0");
        graph.Kept.Keys.Should().Equal("fc");

        long dense = graph.Macs();
        var (masked, shrunk) = PruneAndShrink(model, x, 0.3);
        ShouldMatch(masked, shrunk, 1e-5);
        var fc = (Linear)model.named_modules().First(m => m.name == "fc").module;
        fc.in_features.Should().Be(512 - 154);
        ChannelGraph.Trace(model, x).Macs().Should().BeLessThan(dense * 55 / 100);
    }

    [Fact]
    public void An_operation_the_trace_cannot_see_is_refused_naming_the_module_that_reads_it()
    {
        var act = () => ChannelGraph.Trace(new Scaled(), torch.randn(1, 1, 8, 8));
        act.Should().Throw<NotSupportedException>().WithMessage("*'conv2'*");
    }

    [Fact]
    public void A_residual_branch_that_is_all_zero_on_the_example_is_refused_not_misread()
    {
        var model = TinyResNet(8);
        using (torch.no_grad())
        {
            model.get_parameter("block1.bn2.weight")!.zero_();
            model.get_parameter("block1.bn2.bias")!.zero_();
        }
        var act = () => ChannelGraph.Trace(model, torch.randn(2, 1, 12, 12));
        act.Should().Throw<NotSupportedException>().WithMessage("*'block1.bn2'*");
    }

    [Fact]
    public void A_target_that_belongs_to_another_group_member_is_refused_by_name()
    {
        var model = TinyResNet(9);
        var graph = ChannelGraph.Trace(model, torch.randn(2, 1, 12, 12));
        var act = () => new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(0.5),
            Targets = PruningTargets.Default.Include("stem.weight", "block1.conv2.weight"),
            Granularity = PruningGranularity.OutputChannels(),
            Channels = graph,
        });
        act.Should().Throw<ArgumentException>().WithMessage("*'block1.conv2.weight'*'stem.weight'*");
    }

    [Fact]
    public void A_global_ranking_across_groups_prunes_the_model_wide_count_and_still_shrinks_exactly()
    {
        var model = TinyResNet(10);
        using var x = torch.randn(4, 1, 12, 12);
        var graph = ChannelGraph.Trace(model, x);
        using (var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(0.5),
            Targets = PruningTargets.Default.Include([.. graph.Weights]),
            Granularity = PruningGranularity.OutputChannels(),
            Scope = Pruning.Selection.PruningScope.Global,
            Channels = graph,
        }))
        {
            pruner.Step();
            pruner.Strip();
        }
        long Dead(string weight)
        {
            var p = model.get_parameter(weight)!;
            return TestModels.Values(p.detach().reshape(p.shape[0], -1).abs().sum(1)).Count(v => v == 0);
        }
        graph.Weights.Sum(Dead).Should().Be((8 + 8 + 16 + 16) / 2, "half of all 48 channels, wherever the ranking puts them");
        Dead("block1.conv2.weight").Should().Be(Dead("stem.weight"), "a group's layers share one mask");

        using var noGrad = torch.no_grad();
        float[] masked = TestModels.Values(model.call(x));
        graph.ShrinkInPlace();
        ShouldMatch(masked, TestModels.Values(model.call(x)), 1e-5);
    }

    [Fact]
    public void A_squeeze_and_excitation_block_joins_the_group_it_scales_and_shrinks_to_the_masked_outputs()
    {
        torch.manual_seed(16);
        var model = Warm(nn.Sequential(
            ("conv", nn.Conv2d(3, 8, 3, padding: 1)), ("bn", nn.BatchNorm2d(8)), ("relu", nn.ReLU()), ("se", new Excitation(8, 4)),
            ("conv2", nn.Conv2d(8, 6, 3, padding: 1)), ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(6, 3))), [4, 3, 8, 8]);
        using var x = torch.randn(2, 3, 8, 8);
        var graph = ChannelGraph.Trace(model, x);
        graph.Groups.Select(Describe).Should().Equal(
            "8: conv+se.fc2 | bn | conv2,se.fc1",
            "4: se.fc1 |  | se.fc2",
            "6: conv2 |  | fc");

        var (masked, shrunk) = PruneAndShrink(model, x, 0.5);
        ShouldMatch(masked, shrunk, 1e-5);
        var fc2 = (Conv2d)model.named_modules().First(m => m.name == "se.fc2").module;
        fc2.weight!.shape.Should().Equal(4, 2, 1, 1);
        OnnxExportTests_ShouldMatch(model, x);
        var runtime = Pruning.Export.SparseExport.ToSparseModel(model, new Pruning.Sparse.Layers.FeatureShape(3, 8, 8));
        runtime.Layers.OfType<Pruning.Sparse.Layers.ScaleLayer>().Should().ContainSingle();
        using (torch.no_grad()) ShouldMatch(TestModels.Values(model.call(x)), runtime.Run(TestModels.Values(x), 2), 1e-4);
    }

    private static void OnnxExportTests_ShouldMatch(nn.Module<Tensor, Tensor> model, Tensor x) =>
        Pruning.Tests.Export.OnnxExportTests.ShouldMatchTorch(Pruning.Export.OnnxExport.ToBytes(model, new Pruning.Sparse.Layers.FeatureShape(3, 8, 8)), model, x);

    [Fact]
    public void Network_slimming_scores_a_group_by_the_scales_of_all_its_batchnorms_and_penalizes_every_one()
    {
        var model = TinyResNet(17);
        using (torch.no_grad())
        {
            // Alone, stem_bn would lose channels 0–3; block1.bn2's scale 0 is by far its largest, so the group keeps 0.
            model.get_parameter("stem_bn.weight")!.copy_(torch.tensor(new float[] { 1, 2, 3, 4, 5, 6, 7, 8 }) / 8);
            model.get_parameter("block1.bn2.weight")!.copy_(torch.tensor(new float[] { -100, 1, 1, 1, 1, 1, 1, 1 }) / 8);
        }
        var graph = ChannelGraph.Trace(model, torch.randn(2, 1, 12, 12));
        float expected = model.named_parameters().Where(p => p.name.EndsWith("bn.weight", StringComparison.Ordinal) || p.name.Contains("bn1.weight", StringComparison.Ordinal)
            || p.name.Contains("bn2.weight", StringComparison.Ordinal) || p.name == "block2.down.1.weight").Sum(p => p.parameter.abs().sum().item<float>());
        graph.BatchNormL1Penalty(1e-3).item<float>().Should().BeApproximately(1e-3f * expected, 1e-6f);
        model.named_parameters().Count(p => p.name.EndsWith(".weight", StringComparison.Ordinal) && p.parameter.dim() == 1).Should().Be(6, "every BatchNorm is counted once");

        using (var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(0.5),
            Targets = PruningTargets.Default.Include([.. graph.Weights]),
            Granularity = PruningGranularity.OutputChannels(),
            Criterion = new Pruning.Criteria.BatchNormScalingCriterion(graph),
            Channels = graph,
        }))
        {
            pruner.Step();
            pruner.Strip();
        }
        TestModels.Values(model.get_parameter("stem_bn.weight")!).Select(v => v != 0).Should().Equal(true, false, false, false, false, true, true, true);
        TestModels.Values(model.get_parameter("block1.bn2.weight")!).Select(v => v != 0).Should().Equal(true, false, false, false, false, true, true, true);
    }
}
