using Pruning.Interop;
using Pruning.Structure;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Structure;

/// <summary>Module handlers: a layer type of the user's own joins the channel analysis through one registered handler.</summary>
[Collection(TorchCollection.Name)]
public sealed class ModuleHandlerTests
{
    /// <summary>y = (x Wᵀ + b) · s, one scale per output: a Linear with a learned gain, as users write them.</summary>
    private sealed class GainLinear : nn.Module<Tensor, Tensor>
    {
        public GainLinear(long inputs, long outputs) : base(nameof(GainLinear))
        {
            weight = nn.Parameter(torch.randn(outputs, inputs) / Math.Sqrt(inputs));
            bias = nn.Parameter(torch.randn(outputs) * 0.1);
            scale = nn.Parameter(torch.rand(outputs) + 0.5);
            RegisterComponents();
        }

#pragma warning disable IDE1006 // TorchSharp names parameters after their fields
        public Parameter weight;
        public Parameter bias;
        public Parameter scale;
#pragma warning restore IDE1006

        public override Tensor forward(Tensor x) => nn.functional.linear(x, weight, bias).mul(scale);

        /// <summary>Replaces the three parameters (registered again under their names), as shrinking or undoing needs.</summary>
        public void Replace(Tensor w, Tensor b, Tensor s)
        {
            (weight, bias, scale) = (new Parameter(w), new Parameter(b), new Parameter(s));
            ConditionallyRegisterParameter(nameof(weight), weight);
            ConditionallyRegisterParameter(nameof(bias), bias);
            ConditionallyRegisterParameter(nameof(scale), scale);
        }
    }

    /// <summary>The handler a user writes for GainLinear: it produces channels; weight, bias and scale have one row per output.</summary>
    private sealed class GainLinearHandler : ModuleHandler
    {
        public override ChannelUse Channels(nn.Module module, long[] inputShape, long[] outputShape) =>
            inputShape.Length == 2 ? ChannelUse.Produces("a GainLinear") : ChannelUse.Opaque("a GainLinear over a tensor of rank > 2");

        public override IReadOnlyList<string> ChannelParameters(nn.Module module) => ["weight", "bias", "scale"];

        public override void CheckShrinkable(nn.Module module)
        {
        }

        public override void Shrink(nn.Module module, long[]? rows, long[]? columns)
        {
            var layer = (GainLinear)module;
            using var scope = torch.NewDisposeScope();
            Tensor Keep(Tensor t, long[]? r, long[]? c)
            {
                Tensor kept = t.detach();
                if (r is not null) kept = kept.index_select(0, torch.tensor(r));
                if (c is not null) kept = kept.index_select(1, torch.tensor(c));
                return kept.contiguous().clone().DetachFromDisposeScope();
            }
            layer.Replace(Keep(layer.weight, rows, columns), Keep(layer.bias, rows, null), Keep(layer.scale, rows, null));
        }

        public override Action Save(nn.Module module)
        {
            var layer = (GainLinear)module;
            Tensor w = layer.weight.detach().clone().DetachFromDisposeScope(), b = layer.bias.detach().clone().DetachFromDisposeScope(), s = layer.scale.detach().clone().DetachFromDisposeScope();
            return () => layer.Replace(w, b, s);
        }

        public override long Macs(nn.Module module, long[] outputShape, long? inputs, long? outputs, bool weightsOnly)
        {
            var layer = (GainLinear)module;
            return (inputs ?? layer.weight.shape[1]) * (outputs ?? layer.weight.shape[0]);
        }

        /// <summary>The gain folded in: W' = diag(s)·W, b' = s·b.</summary>
        private static (float[] W, float[] B, int Rows, int Cols) Folded(GainLinear layer)
        {
            using var scope = torch.NewDisposeScope();
            Tensor s = layer.scale.detach();
            return (TestModels.Values(layer.weight.detach().mul(s.unsqueeze(1))), TestModels.Values(layer.bias.detach().mul(s)),
                (int)layer.weight.shape[0], (int)layer.weight.shape[1]);
        }

        public override IReadOnlyList<Pruning.Sparse.Layers.SparseLayer>? ToRuntime(nn.Module module)
        {
            var (w, b, rows, cols) = Folded((GainLinear)module);
            return [new Pruning.Sparse.Layers.LinearLayer(Pruning.Sparse.Matrices.WeightMatrix.FromDense(w, rows, cols, Pruning.Sparse.Matrices.MatrixFormat.Auto), b)];
        }

        public override bool ToOnnx(nn.Module module, string name, Pruning.Export.OnnxLowering graph)
        {
            var (w, b, rows, cols) = Folded((GainLinear)module);
            string weight = graph.Constant($"{name}.weight", w, rows, cols), bias = graph.Constant($"{name}.bias", b, rows);
            graph.Node("Gemm", name, [graph.Current, weight, bias], new Dictionary<string, object> { ["transB"] = 1L });
            return true;
        }
    }

    /// <summary>Reverses the channel order: parameterless, but it mixes channels; a handler that calls it a pass-through lies.</summary>
    private sealed class ReverseChannels : nn.Module<Tensor, Tensor>
    {
        public ReverseChannels() : base(nameof(ReverseChannels)) { }

        public override Tensor forward(Tensor x) => x.flip(1);
    }

    private sealed class LyingPassThrough : ModuleHandler
    {
        public override ChannelUse Channels(nn.Module module, long[] inputShape, long[] outputShape) => ChannelUse.PassThrough("a channel reversal");
    }

    private static Sequential GainModel(int seed)
    {
        torch.manual_seed(seed);
        return nn.Sequential(("fc1", nn.Linear(6, 8)), ("relu1", nn.ReLU()), ("gain", new GainLinear(8, 10)), ("relu2", nn.ReLU()), ("fc2", nn.Linear(10, 3)));
    }

    [Fact]
    public void A_layer_type_of_your_own_is_refused_by_name_until_a_handler_is_registered_and_then_pruned_and_shrunk()
    {
        var model = GainModel(1);
        using var example = torch.randn(4, 6);
        if (ModuleHandlers.For(model.named_children().First(c => c.name == "gain").module) is null)
            FluentActions.Invoking(() => ChannelGraph.Trace(model, example)).Should().Throw<NotSupportedException>()
                .WithMessage("'gain' is a GainLinear with parameters, which the channel analysis does not know: register a ModuleHandler*");

        ModuleHandlers.Register<GainLinear>(new GainLinearHandler());
        var graph = ChannelGraph.Trace(model, example);

        graph.Groups.Select(ChannelGraphTests.Describe).Should().Equal("8: fc1 |  | gain", "10: gain |  | fc2");
        graph.CoupledWith("gain.weight").Should().Equal("gain.bias", "gain.scale");
        graph.Macs().Should().Be(6 * 8 + 8 * 10 + 10 * 3);
        graph.Macs(new Dictionary<string, long> { ["fc1.weight"] = 4, ["gain.weight"] = 5 }).Should().Be(6 * 4 + 4 * 5 + 5 * 3);

        ChannelGraphTests.PruneGroups(model, graph, 0.5);
        TestModels.Values(model.get_parameter("gain.scale")!).Count(v => v == 0).Should().Be(5, "a pruned channel's scale goes with its row");
        using var x = torch.randn(16, 6);
        float[] masked;
        using (torch.no_grad()) masked = TestModels.Values(model.call(x));

        graph.ShrinkInPlace();

        model.get_parameter("gain.weight")!.shape.Should().Equal(5, 4);
        model.get_parameter("gain.scale")!.shape.Should().Equal(5);
        model.get_parameter("fc2.weight")!.shape.Should().Equal(3, 5);
        using (torch.no_grad())
            TestModels.Values(model.call(x)).Zip(masked).Should().OnlyContain(p => Math.Abs(p.First - p.Second) <= 1e-5f);
    }

    [Fact]
    public void A_registered_handler_lowers_its_module_to_the_runtime_and_to_onnx()
    {
        ModuleHandlers.Register<GainLinear>(new GainLinearHandler());
        var model = GainModel(3);
        model.eval();
        var shape = new Pruning.Sparse.Layers.FeatureShape(6);
        var runtime = Pruning.Export.SparseExport.ToSparseModel(model, shape);
        runtime.Layers.OfType<Pruning.Sparse.Layers.LinearLayer>().Should().HaveCount(3, "fc1, the gain layer folded to a Linear, fc2");
        byte[] onnx = Pruning.Export.OnnxExport.ToBytes(model, shape);
        Onnx.ModelProto.Parser.ParseFrom(onnx).Graph.Node.Select(n => n.OpType).Should().Equal("Gemm", "Relu", "Gemm", "Relu", "Gemm");
        using var x = torch.randn(5, 6).mul(3.ToScalar());
        float[] expected;
        using (torch.no_grad()) expected = TestModels.Values(model.call(x));
        runtime.Run(TestModels.Values(x), 5).Zip(expected).Should().OnlyContain(p => Math.Abs(p.First - p.Second) <= 1e-4f * Math.Max(1, expected.Max(Math.Abs)));
        Pruning.Tests.Export.OnnxExportTests.ShouldMatchTorch(onnx, model, x);
    }

    [Fact]
    public void A_handler_that_gets_its_module_wrong_is_caught_by_the_check_after_shrinking_and_the_model_is_put_back()
    {
        ModuleHandlers.Register<ReverseChannels>(new LyingPassThrough());
        torch.manual_seed(2);
        var model = nn.Sequential(("conv1", nn.Conv2d(2, 6, 3, padding: 1)), ("reverse", new ReverseChannels()), ("conv2", nn.Conv2d(6, 3, 1)));
        using var example = torch.randn(2, 2, 5, 5);
        var graph = ChannelGraph.Trace(model, example);
        graph.Groups.Select(ChannelGraphTests.Describe).Should().ContainSingle().Which.Should().Be("6: conv1 |  | conv2", "the handler says the channels pass through");
        ChannelGraphTests.PruneGroups(model, graph, 0.5);
        using var x = torch.randn(3, 2, 5, 5);
        float[] before;
        using (torch.no_grad()) before = TestModels.Values(model.call(x));

        FluentActions.Invoking(graph.ShrinkInPlace).Should().Throw<NotSupportedException>().WithMessage("Shrinking in place broke the model*put back*");

        model.get_parameter("conv1.weight")!.shape.Should().Equal(6, 2, 3, 3);
        using (torch.no_grad())
            TestModels.Values(model.call(x)).Should().Equal(before);
    }
}
