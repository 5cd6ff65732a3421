using Onnx;
using Pruning.Export;
using Pruning.Scheduling;
using Pruning.Sparse;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Serialization;
using Pruning.Structure;
using Pruning.Tests.Structure;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Export;

/// <summary>Models of the user's own Module classes, traced once, on the runtime and in ONNX Runtime.</summary>
[Collection(TorchCollection.Name)]
public sealed class TracedExportTests
{
    /// <summary>u = conv1(x); out = conv4(conv2(u) + conv3(x)) + u: u is read inside one add's branch and by the next add.</summary>
    private sealed class Tangled : nn.Module<Tensor, Tensor>
    {
        private readonly Conv2d conv1 = nn.Conv2d(2, 2, 3, padding: 1), conv2 = nn.Conv2d(2, 2, 3, padding: 1), conv3 = nn.Conv2d(2, 2, 1), conv4 = nn.Conv2d(2, 2, 1);

        public Tangled() : base(nameof(Tangled)) => RegisterComponents();

        public override Tensor forward(Tensor x)
        {
            using var scope = torch.NewDisposeScope();
            Tensor u = conv1.call(x);
            return (conv4.call(conv2.call(u) + conv3.call(x)) + u).MoveToOuterDisposeScope();
        }
    }

    /// <summary>Pooling called in forward, not as modules: a ceil-mode max pool and a padded average pool in a branch.</summary>
    private sealed class FunctionalPools : nn.Module<Tensor, Tensor>
    {
        private readonly Conv2d conv1 = nn.Conv2d(2, 4, 3, padding: 1), conv2 = nn.Conv2d(4, 3, 1), conv3 = nn.Conv2d(7, 5, 3);

        public FunctionalPools() : base(nameof(FunctionalPools)) => RegisterComponents();

        public override Tensor forward(Tensor x)
        {
            using var scope = torch.NewDisposeScope();
            Tensor y = nn.functional.max_pool2d(conv1.call(x), 3, 2, ceil_mode: true);
            Tensor pooled = nn.functional.avg_pool2d(y, 3, 1, 1);
            return conv3.call(torch.cat([conv2.call(y), pooled], 1)).MoveToOuterDisposeScope();
        }
    }

    private static void Prune(nn.Module model, double sparsity)
    {
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(sparsity) });
        pruner.Step();
        pruner.Strip();
    }

    /// <summary>The runtime (and its file round trip) and ONNX Runtime against TorchSharp, within 1e-4 of the output range.</summary>
    private static SparseModel ShouldRunLikeTorch(nn.Module<Tensor, Tensor> model, FeatureShape shape, Tensor x)
    {
        model.eval();
        SparseModel runtime = SparseExport.ToSparseModel(model, shape);
        float[] expected;
        using (torch.no_grad()) expected = TestModels.Values(model.call(x));
        double scale = Math.Max(1, expected.Max(v => Math.Abs((double)v)));
        int batch = (int)x.shape[0];
        foreach (SparseModel candidate in new[] { runtime, SparseModel.Read(runtime.ToBytes()) })
            candidate.Run(TestModels.Values(x), batch).Zip(expected).Should().OnlyContain(p => Math.Abs(p.First - p.Second) <= 1e-4 * scale);
        OnnxExportTests.ShouldMatchTorch(OnnxExport.ToBytes(model, shape), model, x);
        return runtime;
    }

    [Fact]
    public void TorchVision_resnet18_pruned_then_channel_shrunk_runs_on_the_runtime_and_in_onnx_runtime_like_torch()
    {
        torch.manual_seed(11);
        var model = ChannelGraphTests.Warm(torchvision.models.resnet18(num_classes: 10), [4, 3, 32, 32]);
        using var x = torch.randn(2, 3, 32, 32);
        var graph = ChannelGraph.Trace(model, x);
        ChannelGraphTests.PruneGroups(model, graph, 0.25);
        graph.ShrinkInPlace();
        Prune(model, 0.8);   // then unstructured, inside every remaining layer

        SparseModel runtime = ShouldRunLikeTorch(model, new FeatureShape(3, 32, 32), x);
        runtime.Layers.OfType<ResidualLayer>().Should().HaveCount(8, "one residual layer per basic block");
        runtime.Layers.OfType<ResidualLayer>().Count(r => r.Shortcut.Count > 0).Should().Be(3, "layer2–4 open with a downsampling shortcut");
        runtime.OutputShape.Should().Be(new FeatureShape(10));
        ModelProto.Parser.ParseFrom(OnnxExport.ToBytes(model, new FeatureShape(3, 32, 32))).Graph.Node.Count(n => n.OpType == "Add").Should().Be(8);
    }

    [Fact]
    public void User_blocks_with_functional_relus_and_a_concatenation_export_as_residual_and_concat_layers()
    {
        torch.manual_seed(12);
        var model = ChannelGraphTests.Warm(nn.Sequential(
            ("stem", nn.Conv2d(1, 8, 3, padding: 1)), ("block", new ChannelGraphTests.BasicBlock(8, 8, 1)),
            ("mix", new ChannelGraphTests.Branches(8)), ("conv", nn.Conv2d(10, 6, 3, stride: 2, padding: 1)),
            ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(6, 4))), [4, 1, 10, 10]);
        Prune(model, 0.6);
        using var x = torch.randn(3, 1, 10, 10);

        SparseModel runtime = ShouldRunLikeTorch(model, new FeatureShape(1, 10, 10), x);
        runtime.Layers.OfType<ResidualLayer>().Should().ContainSingle();
        runtime.Layers.OfType<ConcatLayer>().Should().ContainSingle().Which.Branches.Should().HaveCount(2);
        var nodes = ModelProto.Parser.ParseFrom(OnnxExport.ToBytes(model, new FeatureShape(1, 10, 10))).Graph.Node;
        nodes.Count(n => n.OpType == "Concat").Should().Be(1);
        nodes.Count(n => n.OpType == "Relu").Should().Be(2 + 2, "the block's two functional ReLUs and one per branch");
    }

    [Fact]
    public void Pooling_called_in_forward_is_recognized_and_exported_as_pooling_layers()
    {
        torch.manual_seed(13);
        var model = new FunctionalPools();
        using var x = torch.randn(2, 2, 10, 10);
        SparseModel runtime = ShouldRunLikeTorch(model, new FeatureShape(2, 10, 10), x);
        runtime.Layers.OfType<Pool2dLayer>().Should().ContainSingle().Which.CeilMode.Should().BeTrue();
        runtime.Layers.OfType<ConcatLayer>().Should().ContainSingle().Which.Branches[1].Should().ContainSingle().Which.Should().BeOfType<Pool2dLayer>();
        var graph = ChannelGraph.Trace(model, x);
        graph.Groups.Select(g => g.ToString()).Should().Equal("4 channels: conv1", "3 channels: conv2");
    }

    [Fact]
    public void A_graph_whose_branches_share_a_layer_is_refused_by_name()
    {
        var act = () => SparseExport.ToSparseModel(new Tangled(), new FeatureShape(2, 5, 5));
        act.Should().Throw<NotSupportedException>().WithMessage("*'conv1'*");
    }
}
