using Pruning.Criteria;
using Pruning.Optimizers;
using Pruning.Scheduling;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Masks;

/// <summary>Masks and criterion state follow each parameter's dtype (and, by construction, its device).</summary>
[Collection(TorchCollection.Name)]
public sealed class ParameterMaskTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pruning-dtype-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_float64_model_trains_pruned_with_float64_masks_and_criterion_state_and_resumes_exactly()
    {
        PruningOptions Options() => new() { Schedule = new PolynomialDecaySchedule(0.2, 0.7, 2, 8, 2), Criterion = new FisherCriterion() };
        Sequential Model() { var m = TestModels.Mlp(91); m.to(ScalarType.Float64); return m; }
        void Train(Sequential m, optim.Optimizer o, GradualPruner p, int from, int to)
        {
            for (int step = from; step < to; step++)
            {
                using var scope = torch.NewDisposeScope();
                var (x, y) = TestModels.Batch(2000 + step);
                o.zero_grad();
                nn.functional.cross_entropy(m.call(x.to(ScalarType.Float64)), y).backward();
                o.step();
                p.Step();
            }
        }

        var straight = Model();
        var straightOptimizer = SafeOptim.Adam(straight.parameters(), 0.01);
        using var straightPruner = new GradualPruner(straight, Options(), straightOptimizer);
        Train(straight, straightOptimizer, straightPruner, 0, 12);

        var first = Model();
        var firstOptimizer = SafeOptim.Adam(first.parameters(), 0.01);
        string checkpoint = Path.Combine(_dir, "f64.pruning"), weights = Path.Combine(_dir, "f64.bin"), state = Path.Combine(_dir, "f64.opt");
        using (var pruner = new GradualPruner(first, Options(), firstOptimizer))
        {
            Train(first, firstOptimizer, pruner, 0, 5);
            using Tensor mask = pruner.Mask("fc1.weight");
            mask.dtype.Should().Be(ScalarType.Float64);
            pruner.Save(checkpoint);
            first.save(weights);
            firstOptimizer.save_state_dict(state);
        }
        var resumed = Model();
        resumed.load(weights);
        var resumedOptimizer = SafeOptim.Adam(resumed.parameters(), 0.01);
        resumedOptimizer.load_state_dict(state);
        using var resumedPruner = new GradualPruner(resumed, Options(), resumedOptimizer);
        resumedPruner.Load(checkpoint);
        Train(resumed, resumedOptimizer, resumedPruner, 5, 12);

        foreach (var ((name, a), (_, b)) in straight.named_parameters().Zip(resumed.named_parameters()))
        {
            b.dtype.Should().Be(ScalarType.Float64);
            using var equal = a.eq(b).all();
            equal.item<bool>().Should().BeTrue($"{name} resumes bit-identically in float64");
        }
        resumedPruner.Report().Layers.Should().OnlyContain(l => l.MaskedNonzero == 0 && l.Sparsity >= 0.69);
    }

    [Theory]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.BFloat16)]
    public void A_half_precision_model_is_pruned_to_exact_zeros_with_masks_in_its_dtype(ScalarType dtype)
    {
        var model = TestModels.Mlp(92);
        model.to(dtype);
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.75) });
        pruner.Step();
        foreach (string name in pruner.ParameterNames)
        {
            using Tensor mask = pruner.Mask(name);
            mask.dtype.Should().Be(dtype);
            Parameter weight = model.get_parameter(name)!;
            weight.dtype.Should().Be(dtype);
            using var zeros = weight.eq(Pruning.Interop.Scalars.Zero);
            zeros.sum().item<long>().Should().Be(Pruning.Selection.MaskSelector.PrunedCount(0.75, weight.numel()), name);
        }
        pruner.Report().MaskedNonzero.Should().Be(0);
    }
}
