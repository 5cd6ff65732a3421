using Onnx;
using Pruning.Export;
using Pruning.Scheduling;
using Pruning.Sparse.Layers;
using Pruning.Structure;
using Pruning.Tests.Export;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Structure;

/// <summary>
/// Small models of the kinds that were exported or grouped wrong without a word, or crashed without naming a module:
/// each is now exported right (checked on fresh inputs, not the traced example) or refused naming the module.
/// </summary>
[Collection(TorchCollection.Name)]
public sealed class TraceHonestyTests
{
    private static readonly FeatureShape Image = new(2, 5, 5);

    /// <summary>forward: x.relu_(); conv(x). The trace kept the edited example as the input, so the ReLU vanished.</summary>
    private sealed class InPlaceReluOnInput : nn.Module<Tensor, Tensor>
    {
        private readonly Conv2d conv = nn.Conv2d(2, 3, 3, padding: 1);

        public InPlaceReluOnInput() : base(nameof(InPlaceReluOnInput)) => RegisterComponents();

        public override Tensor forward(Tensor x) => conv.call(x.relu_());
    }

    /// <summary>forward: x.sub_(1); conv(x): an edit no recognized operation explains.</summary>
    private sealed class InPlaceSubOnInput : nn.Module<Tensor, Tensor>
    {
        private readonly Conv2d conv = nn.Conv2d(2, 3, 3, padding: 1);

        public InPlaceSubOnInput() : base(nameof(InPlaceSubOnInput)) => RegisterComponents();

        public override Tensor forward(Tensor x)
        {
            using var one = 1.ToScalar();
            return conv.call(x.sub_(one));
        }
    }

    /// <summary>c2(relu6(c1(x))) or c2(clamp_max(c1(x), limit)): identities wherever the example stays below the limit.</summary>
    private sealed class Clipped : nn.Module<Tensor, Tensor>
    {
        private readonly Conv2d c1 = nn.Conv2d(2, 3, 3, padding: 1), c2 = nn.Conv2d(3, 3, 1);
        private readonly double? _limit;

        public Clipped(double? limit) : base(nameof(Clipped))
        {
            _limit = limit;
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = torch.NewDisposeScope();
            Tensor y = c1.call(x);
            if (_limit is null) return c2.call(nn.functional.relu6(y)).MoveToOuterDisposeScope();
            using var limit = _limit.Value.ToScalar();
            return c2.call(y.clamp_max(limit)).MoveToOuterDisposeScope();
        }
    }

    /// <summary>y = c1(x); b = bn(c2(y)) with bn zeroed; c3(y + b) + c4(b): the add is invisible, and b is read elsewhere.</summary>
    private sealed class ZeroBranchReadTwice : nn.Module<Tensor, Tensor>
    {
        private readonly Conv2d c1 = nn.Conv2d(2, 4, 3, padding: 1), c2 = nn.Conv2d(4, 4, 3, padding: 1), c3 = nn.Conv2d(4, 3, 1), c4 = nn.Conv2d(4, 3, 1);
        private readonly BatchNorm2d bn = nn.BatchNorm2d(4);

        public ZeroBranchReadTwice() : base(nameof(ZeroBranchReadTwice))
        {
            RegisterComponents();
            using var _ = torch.no_grad();
            bn.weight!.zero_();
            bn.bias!.zero_();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = torch.NewDisposeScope();
            Tensor y = c1.call(x), b = bn.call(c2.call(y));
            return (c3.call(y + b) + c4.call(b)).MoveToOuterDisposeScope();
        }
    }

    /// <summary>conv → flatten → BatchNorm1d over C·H·W features → Linear.</summary>
    private sealed class FlattenThenBatchNorm1d : nn.Module<Tensor, Tensor>
    {
        private readonly Conv2d conv = nn.Conv2d(2, 4, 3, padding: 1);
        private readonly BatchNorm1d bn = nn.BatchNorm1d(4 * 5 * 5);
        private readonly Linear fc = nn.Linear(100, 3);

        public FlattenThenBatchNorm1d() : base(nameof(FlattenThenBatchNorm1d)) => RegisterComponents();

        public override Tensor forward(Tensor x) => fc.call(bn.call(conv.call(x).flatten(1)));
    }

    /// <summary>Two 1×1 convolutions that hold one weight tensor.</summary>
    private sealed class Tied : nn.Module<Tensor, Tensor>
    {
        private readonly Conv2d stem = nn.Conv2d(2, 4, 3, padding: 1), a = nn.Conv2d(4, 4, 1, bias: false), b = nn.Conv2d(4, 4, 1, bias: false), head = nn.Conv2d(4, 3, 1);

        public Tied() : base(nameof(Tied))
        {
            RegisterComponents();
            b.weight = a.weight;
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = torch.NewDisposeScope();
            return head.call(b.call(nn.functional.relu(a.call(stem.call(x))))).MoveToOuterDisposeScope();
        }
    }

    /// <summary>b(relu(a(a(x)))): one Linear called twice.</summary>
    private sealed class CalledTwice : nn.Module<Tensor, Tensor>
    {
        private readonly Linear a = nn.Linear(4, 4), b = nn.Linear(4, 2);

        public CalledTwice() : base(nameof(CalledTwice)) => RegisterComponents();

        public override Tensor forward(Tensor x)
        {
            using var scope = torch.NewDisposeScope();
            return b.call(a.call(a.call(x)).relu()).MoveToOuterDisposeScope();
        }
    }

    /// <summary>b(h + dropout(h)), h = a(x): in inference the add doubles h.</summary>
    private sealed class DropoutBranch : nn.Module<Tensor, Tensor>
    {
        private readonly Linear a = nn.Linear(4, 4), b = nn.Linear(4, 2);
        private readonly Dropout d = nn.Dropout(0.5);

        public DropoutBranch() : base(nameof(DropoutBranch)) => RegisterComponents();

        public override Tensor forward(Tensor x)
        {
            using var scope = torch.NewDisposeScope();
            Tensor h = a.call(x);
            return b.call(h + d.call(h)).MoveToOuterDisposeScope();
        }
    }

    /// <summary>Returns two tensors.</summary>
    private sealed class TwoOutputs : nn.Module<Tensor, (Tensor, Tensor)>
    {
        private readonly Linear a = nn.Linear(4, 3), b = nn.Linear(4, 3);

        public TwoOutputs() : base(nameof(TwoOutputs)) => RegisterComponents();

        public override (Tensor, Tensor) forward(Tensor x) => (a.call(x), b.call(x));
    }

    /// <summary>conv2(y · s) with y = conv(x) and s one number a sample, made 1-D by a leaf module (flatten from dimension 0).</summary>
    private sealed class OneDimensional : nn.Module<Tensor, Tensor>
    {
        private readonly Conv2d conv = nn.Conv2d(2, 3, 3, padding: 1), single = nn.Conv2d(2, 1, 1), conv2 = nn.Conv2d(3, 3, 1);
        private readonly AdaptiveAvgPool2d pool = nn.AdaptiveAvgPool2d(1);
        private readonly Flatten flat = nn.Flatten(0);

        public OneDimensional() : base(nameof(OneDimensional)) => RegisterComponents();

        public override Tensor forward(Tensor x)
        {
            using var scope = torch.NewDisposeScope();
            Tensor y = conv.call(x), s = flat.call(pool.call(single.call(x)));
            return conv2.call(y * s.reshape(-1, 1, 1, 1)).MoveToOuterDisposeScope();
        }
    }

    /// <summary>Fresh inputs of <paramref name="shape"/> at scales 1 and 10, from a seed the library never uses.</summary>
    private static IEnumerable<Tensor> FreshInputs(FeatureShape shape)
    {
        long[] sample = shape.IsVector ? [shape.Channels] : [shape.Channels, shape.Height, shape.Width];
        using var generator = new torch.Generator(777);
        foreach (double scale in new[] { 1.0, 10.0 })
            yield return torch.randn([3, .. sample], generator: generator).mul(scale.ToScalar());
    }

    /// <summary>The runtime and ONNX Runtime give the model's outputs on fresh inputs.</summary>
    private static void ExportsRunLikeTorch(nn.Module<Tensor, Tensor> model, FeatureShape shape)
    {
        model.eval();
        var runtime = SparseExport.ToSparseModel(model, shape);
        byte[] onnx = OnnxExport.ToBytes(model, shape);
        foreach (Tensor x in FreshInputs(shape))
        {
            using (x)
            {
                float[] expected;
                using (torch.no_grad()) expected = TestModels.Values(model.call(x.clone()));
                double scale = Math.Max(1, expected.Max(v => Math.Abs((double)v)));
                runtime.Run(TestModels.Values(x), 3).Zip(expected).Should().OnlyContain(p => Math.Abs(p.First - p.Second) <= 1e-4 * scale);
                OnnxExportTests.ShouldMatchTorch(onnx, model, x.clone());
            }
        }
    }

    private static void ExportsAreRefused(nn.Module<Tensor, Tensor> model, FeatureShape shape, params string[] messageParts)
    {
        model.eval();
        foreach (Action export in new Action[] { () => SparseExport.ToSparseModel(model, shape), () => OnnxExport.ToBytes(model, shape) })
        {
            string message = FluentActions.Invoking(export).Should().Throw<NotSupportedException>().Which.Message;
            foreach (string part in messageParts) message.Should().Contain(part);
        }
    }

    [Fact]
    public void A_forward_that_relus_its_input_in_place_is_exported_with_the_relu()
    {
        var model = new InPlaceReluOnInput();
        // The export holds the ReLU: the trace explained the convolution's input from the input as it was.
        SparseExport.ToSparseModel(model, Image).Layers.Select(l => l.Describe()).Should().StartWith("ReLU");
        ExportsRunLikeTorch(model, Image);
    }

    [Fact]
    public void A_forward_that_edits_its_input_otherwise_is_refused_naming_the_reader_and_the_edit()
    {
        ExportsAreRefused(new InPlaceSubOnInput(), Image, "'conv'", "edits its input in place");
    }

    [Theory]
    [InlineData(null)]   // relu6: nothing of the example's convolution exceeds 6
    [InlineData(8.0)]    // clamp_max(8), above every value the example gives
    public void An_operation_that_is_an_identity_on_the_example_is_refused_naming_its_reader(double? limit)
    {
        var model = new Clipped(limit);
        using (var example = ModuleTrace.Example([2, 5, 5]))
        using (torch.no_grad())
        using (Tensor y = model.named_children().First().module is Conv2d c1 ? c1.call(example) : throw new InvalidOperationException())
            y.max().item<float>().Should().BeLessThan(6, "on the one input the old trace saw, the clip changed nothing");
        ExportsAreRefused(model, Image, "'c2'", "identity on small inputs only");
        FluentActions.Invoking(() => ChannelGraph.Trace(model, torch.randn(2, 2, 5, 5))).Should().Throw<NotSupportedException>().WithMessage("*'c2'*");
    }

    [Fact]
    public void A_zero_branch_that_another_module_also_reads_is_refused_naming_it()
    {
        var model = new ZeroBranchReadTwice();
        // Before, c1 and c2 came out as two groups although c2's channels (through bn) are added to c1's.
        FluentActions.Invoking(() => ChannelGraph.Trace(model, torch.randn(2, 2, 5, 5))).Should().Throw<NotSupportedException>()
            .WithMessage("The output of 'bn' is exactly zero on every traced input*");
        ExportsAreRefused(model, Image, "'bn'");
    }

    [Fact]
    public void A_batchnorm1d_over_a_flattened_convolution_keeps_its_channels_and_the_pruner_steps()
    {
        torch.manual_seed(3);
        var model = new FlattenThenBatchNorm1d();
        var graph = ChannelGraph.Trace(model, torch.randn(2, 2, 5, 5));
        graph.Groups.Should().BeEmpty("the only convolution's channels reach a BatchNorm1d of 100 features");
        graph.Kept.Should().ContainKey("conv").WhoseValue.Should().Contain("'bn' is a BatchNorm over a flattened tensor (25 features a channel)");
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5), Channels = graph });
        pruner.Step();   // was a native size error: bn's 100 features were taken for conv's 4 channels
        pruner.Report().Sparsity.Should().BeApproximately(0.5, 0.01);
    }

    [Fact]
    public void Shrinking_a_model_with_tied_weights_is_refused_before_anything_changes()
    {
        torch.manual_seed(5);
        var model = new Tied();
        model.eval();
        using var x = torch.randn(2, 2, 5, 5);
        var graph = ChannelGraph.Trace(model, x);
        ChannelGraphTests.PruneGroups(model, graph, 0.5);
        Tensor before;
        using (torch.no_grad()) before = model.call(x).detach().clone();

        FluentActions.Invoking(graph.ShrinkInPlace).Should().Throw<NotSupportedException>().WithMessage("*'a.weight'*'b.weight'*tied weights*Nothing was changed*");

        using (torch.no_grad())
            model.call(x).allclose(before).Should().BeTrue("the model is whole and unchanged");
        model.named_parameters().Select(p => p.parameter.shape[0]).Should().OnlyContain(n => n > 0);
    }

    [Fact]
    public void A_module_called_twice_is_exported_with_distinct_onnx_node_names_and_runs_in_onnx_runtime()
    {
        torch.manual_seed(6);
        var model = new CalledTwice();
        var proto = ModelProto.Parser.ParseFrom(OnnxExport.ToBytes(model, new FeatureShape(4)));
        proto.Graph.Node.Select(n => n.Name).Should().OnlyHaveUniqueItems().And.Contain("a").And.Contain("a_1");
        ExportsRunLikeTorch(model, new FeatureShape(4));
    }

    [Fact]
    public void An_add_whose_branch_is_only_a_dropout_is_refused_by_the_runtime_naming_it_and_doubled_in_onnx()
    {
        torch.manual_seed(7);
        var model = new DropoutBranch();
        model.eval();
        FluentActions.Invoking(() => SparseExport.ToSparseModel(model, new FeatureShape(4))).Should().Throw<NotSupportedException>()
            .WithMessage("*adds a tensor to itself*'d'*");
        using var x = torch.randn(3, 4);
        OnnxExportTests.ShouldMatchTorch(OnnxExport.ToBytes(model, new FeatureShape(4)), model, x);
    }

    [Fact]
    public void A_one_dimensional_tensor_in_the_trace_gives_a_refusal_naming_the_reader_not_an_index_error()
    {
        ExportsAreRefused(new OneDimensional(), Image, "the input of 'conv2'");
    }

    [Fact]
    public void A_model_that_returns_two_tensors_is_refused_naming_its_type()
    {
        var model = new TwoOutputs();
        FluentActions.Invoking(() => SparseExport.ToSparseModel(model, new FeatureShape(4))).Should().Throw<NotSupportedException>().WithMessage("*TwoOutputs*one tensor*");
        FluentActions.Invoking(() => OnnxExport.ToBytes(model, new FeatureShape(4))).Should().Throw<NotSupportedException>().WithMessage("*TwoOutputs*one tensor*");
    }
}
