using Pruning.Export;
using Pruning.Sparse.Layers;
using Pruning.Structure;
using Pruning.Tests.Export;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Structure;

/// <summary>
/// A property over random small models built from the operations the trace knows and some it must refuse (adds,
/// concatenations, poolings, functional and in-place ReLUs, relu6 and clamps at random thresholds): every export and
/// every shrink either reproduces the model on fresh inputs or is refused, never silently different.
/// </summary>
[Collection(TorchCollection.Name)]
public sealed class RandomGraphTests
{
    private const int Channels = 4;

    private enum Op { Conv, Relu, ReluInPlace, Relu6, ClampMax, ClampMin, Add, AddInPlace, Concat, MaxPool, BatchNorm }

    /// <summary>
    /// A stem convolution, then random steps over the module outputs made so far: a convolution or BatchNorm of the last,
    /// or an operation (ReLU, in place or not, relu6, a clamp, an add, in place or not, a concatenation, a max pooling)
    /// whose result a 1×1 convolution reads; a 1×1 head. In-place steps edit a module's output that later steps may read.
    /// </summary>
    private sealed class RandomGraph : nn.Module<Tensor, Tensor>
    {
        private readonly List<(Op Op, int Other, double Threshold, nn.Module<Tensor, Tensor> Module)> _steps = [];
        private readonly Conv2d stem = nn.Conv2d(2, Channels, 3, padding: 1), head = nn.Conv2d(Channels, 3, 1);

        public RandomGraph(int seed) : base($"{nameof(RandomGraph)}{seed}")
        {
            var random = new Random(seed);
            torch.manual_seed(seed);
            int steps = random.Next(3, 8);
            // The operations the trace knows come three times as often as those it must refuse (relu6, clamps).
            Op[] choices = [Op.Conv, Op.Conv, Op.Conv, Op.Relu, Op.Relu, Op.ReluInPlace, Op.ReluInPlace, Op.Add, Op.Add, Op.AddInPlace,
                Op.AddInPlace, Op.Concat, Op.Concat, Op.MaxPool, Op.MaxPool, Op.BatchNorm, Op.Relu6, Op.ClampMax, Op.ClampMin];
            for (int i = 0; i < steps; i++)
            {
                var op = choices[random.Next(choices.Length)];
                if (i == 0 && op is Op.Add or Op.AddInPlace or Op.Concat) op = Op.Relu;   // one tensor only so far
                nn.Module<Tensor, Tensor> module = op switch
                {
                    Op.Conv => nn.Conv2d(Channels, Channels, 3, padding: 1),
                    Op.Concat => nn.Conv2d(2 * Channels, Channels, 1),
                    Op.BatchNorm => nn.BatchNorm2d(Channels),
                    _ => nn.Conv2d(Channels, Channels, 1),
                };
                if (module is BatchNorm2d bn)
                    using (torch.no_grad())
                    {
                        bn.running_mean!.uniform_(-0.5, 0.5);
                        bn.running_var!.uniform_(0.5, 2);
                        bn.weight!.uniform_(0.5, 1.5);
                        bn.bias!.uniform_(-0.5, 0.5);
                    }
                register_module($"step{i}", module);
                // Another module output than the last, and a threshold the traced inputs reach.
                _steps.Add((op, random.Next(Math.Max(1, i)), 0.5 + 5.5 * random.NextDouble(), module));
            }
            RegisterComponents();
        }

        public string Ops => string.Join(" ", _steps.Select(s => s.Op));

        public override Tensor forward(Tensor x)
        {
            using var scope = torch.NewDisposeScope();
            var made = new List<Tensor> { stem.call(x) };
            foreach (var (op, other, threshold, module) in _steps)
            {
                Tensor last = made[^1], earlier = made[other];
                using var limit = threshold.ToScalar();
                using var negative = (-threshold).ToScalar();
                made.Add(module.call(op switch
                {
                    Op.Conv or Op.BatchNorm => last,
                    Op.Relu => last.relu(),
                    Op.ReluInPlace => last.relu_(),
                    Op.Relu6 => nn.functional.relu6(last),
                    Op.ClampMax => last.clamp_max(limit),
                    Op.ClampMin => last.clamp_min(negative),
                    Op.Add => last + earlier,
                    Op.AddInPlace => last.add_(earlier),
                    Op.Concat => torch.cat([last, earlier], 1),
                    _ => nn.functional.max_pool2d(last, 3, 1, 1),
                }));
            }
            return head.call(made[^1]).MoveToOuterDisposeScope();
        }
    }

    private static readonly FeatureShape Shape = new(2, 6, 6);

    /// <summary>Inputs the library never traced: another seed, scales 1 and 10 (those the trace covers).</summary>
    private static List<Tensor> FreshInputs()
    {
        using var generator = new torch.Generator(4242);
        return [torch.randn([3, 2, 6, 6], generator: generator), torch.randn([3, 2, 6, 6], generator: generator).mul(10.ToScalar())];
    }

    private static double Difference(float[] actual, float[] expected)
    {
        double scale = Math.Max(1, expected.Max(v => Math.Abs((double)v)));
        return actual.Length != expected.Length ? double.PositiveInfinity : actual.Zip(expected).Max(p => Math.Abs(p.First - p.Second)) / scale;
    }

    [Fact]
    public void Random_models_are_exported_and_shrunk_exactly_or_refused_never_silently_different()
    {
        int exported = 0, refused = 0, shrunk = 0, shrinkRefused = 0;
        var inputs = FreshInputs();
        for (int seed = 1; seed <= 40; seed++)
        {
            var model = new RandomGraph(seed);
            model.eval();
            var expected = inputs.Select(x => { using (torch.no_grad()) return TestModels.Values(model.call(x.clone())); }).ToList();
            try
            {
                var runtime = SparseExport.ToSparseModel(model, Shape);
                byte[] onnx = OnnxExport.ToBytes(model, Shape);
                for (int i = 0; i < inputs.Count; i++)
                {
                    Difference(runtime.Run(TestModels.Values(inputs[i]), 3), expected[i]).Should().BeLessThanOrEqualTo(1e-4, $"seed {seed} ({model.Ops}), input {i}, runtime");
                    OnnxExportTests.ShouldMatchTorch(onnx, model, inputs[i].clone());
                }
                exported++;
            }
            catch (NotSupportedException e)
            {
                e.Message.Should().MatchRegex("'[^']+'", $"seed {seed} ({model.Ops}): a refusal names the module or operation");
                refused++;
            }

            try
            {
                using var example = torch.randn(2, 2, 6, 6);
                var graph = ChannelGraph.Trace(model, example);
                ChannelGraphTests.PruneGroups(model, graph, 0.5);
                var masked = inputs.Select(x => { using (torch.no_grad()) return TestModels.Values(model.call(x.clone())); }).ToList();
                graph.ShrinkInPlace();
                for (int i = 0; i < inputs.Count; i++)
                    using (torch.no_grad())
                        Difference(TestModels.Values(model.call(inputs[i].clone())), masked[i]).Should().BeLessThanOrEqualTo(1e-4, $"seed {seed} ({model.Ops}), input {i}, shrunk");
                shrunk++;
            }
            catch (NotSupportedException e)
            {
                e.Message.Should().MatchRegex("'[^']+'|[Nn]othing", $"seed {seed} ({model.Ops})");
                shrinkRefused++;
            }
        }
        // Not vacuous: both outcomes occur among the 40 models.
        exported.Should().BeGreaterThan(5);
        refused.Should().BeGreaterThan(5);
        shrunk.Should().BeGreaterThan(5);
        (exported + refused).Should().Be(40);
        (shrunk + shrinkRefused).Should().Be(40);
    }
}
