using Pruning.Grouping;
using Pruning.Reconstruction;
using Pruning.Scheduling;
using Pruning.Selection;
using Pruning.Targets;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Reconstruction;

[Collection(TorchCollection.Name)]
public sealed class ReconstructionPolicyTests
{
    /// <summary>Batches from the distribution the test models are trained on.</summary>
    private static List<Tensor> Inputs(int seed, int batches) =>
        Enumerable.Range(0, batches).Select(i => TestModels.Batch(seed * 100 + i).X).ToList();

    private static Sequential TrainedMlp(int seed)
    {
        var model = TestModels.Mlp(seed);
        var optimizer = TestModels.Optimizer("adam", model);
        for (int step = 0; step < 40; step++) TestModels.TrainStep(model, optimizer, step);
        return model;
    }

    private static double OutputError(Sequential dense, Sequential pruned, IEnumerable<Tensor> inputs)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        return inputs.Sum(x => dense.call(x).sub(pruned.call(x)).pow(2).mean().item<float>());
    }

    private static Sequential Copy(Sequential model, int seed)
    {
        var copy = TestModels.Mlp(seed);
        copy.load_state_dict(model.state_dict());
        return copy;
    }

    private static GradualPruner OneShot(nn.Module model, Pruning.Criteria.MaskPolicy? policy, double sparsity, PruningGranularity? granularity = null,
        PruningTargets? targets = null)
    {
        var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(sparsity),
            Policy = policy,
            Granularity = granularity ?? PruningGranularity.Element,
            Targets = targets ?? PruningTargets.Default,
        });
        pruner.Step();
        return pruner;
    }

    [Theory]
    [InlineData("element", 0.7)]
    [InlineData("2:4", 0.5)]
    public void One_shot_OBS_reconstructs_better_than_Wanda_and_magnitude_at_exact_counts(string pattern, double sparsity)
    {
        var granularity = pattern == "element" ? PruningGranularity.Element : PruningGranularity.NOfM(2, 4);
        var dense = TrainedMlp(1);
        var calibration = Inputs(2, 8);
        var heldOut = Inputs(3, 4);
        var errors = new Dictionary<string, double>();
        foreach (string method in new[] { "magnitude", "wanda", "obs" })
        {
            var model = Copy(dense, 1);
            Pruning.Criteria.MaskPolicy? policy = method switch
            {
                "magnitude" => null,
                "wanda" => new WandaPolicy(new CalibrationSet(calibration)),
                _ => new ObsPolicy(new CalibrationSet(calibration)),
            };
            using var pruner = OneShot(model, policy, sparsity, granularity);
            foreach (var layer in pruner.Report().Layers)
                (layer.Total - layer.Nonzero).Should().Be(MaskSelector.PrunedCount(sparsity, layer.Total), $"{method} prunes exactly round(s·n) of {layer.Name}");
            errors[method] = OutputError(dense, model, heldOut);
        }
        errors["obs"].Should().BeLessThan(0.7 * errors["wanda"]);
        errors["obs"].Should().BeLessThan(0.7 * errors["magnitude"]);
    }

    [Fact]
    public void Per_layer_overrides_and_bounds_set_each_layers_exact_count_and_strip_keeps_the_zeros()
    {
        var model = TrainedMlp(12);
        using var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(0.8),
            Policy = new ObsPolicy(new CalibrationSet(Inputs(13, 4))),
            Overrides = new Dictionary<string, ParameterOverride>
            {
                ["fc3.weight"] = new() { FinalSparsity = 0.3 },
                ["fc2.weight"] = new() { Bounds = new SparsityRange(0, 0.6) },
            },
        });
        pruner.Step();
        var report = pruner.Strip();
        var pruned = report.Layers.ToDictionary(l => l.Name, l => l.Total - l.Nonzero);
        pruned["fc1.weight"].Should().Be(MaskSelector.PrunedCount(0.8, 32 * 16));
        pruned["fc2.weight"].Should().Be(MaskSelector.PrunedCount(0.6, 24 * 32));
        pruned["fc3.weight"].Should().Be(MaskSelector.PrunedCount(0.3, 3 * 24));
    }

    [Fact]
    public void Sequential_calibration_solves_each_layer_on_the_outputs_of_the_pruned_layers_before_it()
    {
        var dense = TrainedMlp(4);
        var calibration = Inputs(5, 6);
        var model = Copy(dense, 4);
        using (OneShot(model, new ObsPolicy(new CalibrationSet(calibration)), 0.6)) { }

        // fc2 solved by hand on the inputs that the already pruned fc1 produces: the same weights.
        Tensor Expected(Sequential inputsFrom)
        {
            using var covariance = new InputCovariance("fc2.weight", 32);
            using (torch.no_grad())
                foreach (Tensor x in calibration)
                    covariance.Add(torch.nn.functional.relu(((Linear)inputsFrom.named_children().First(c => c.name == "fc1").module).call(x)));
            Tensor weight = dense.get_parameter("fc2.weight")!.detach().to(ScalarType.Float64).clone();
            var keep = new bool[weight.numel()];
            ObsSolver.Prune(weight, covariance.Mean(), new WeightWindows("fc2.weight", [24, 32], PruningGranularity.Element), 0.6, 0.01, 128, default, keep);
            return weight;
        }
        Tensor actual = model.get_parameter("fc2.weight")!.detach().to(ScalarType.Float64);
        actual.sub(Expected(model)).abs().max().item<double>().Should().BeLessThan(1e-5);
        actual.sub(Expected(dense)).abs().max().item<double>().Should().BeGreaterThan(1e-3, "calibrating on the dense fc1's outputs gives other weights");
    }

    [Fact]
    public void Wandas_mask_compares_weight_times_input_norm_within_each_row()
    {
        // Input norms per column are 1, 10, 0.1 and 1. Row 0 scores 1, 2, 0.5, 1.5 and loses columns 2 and 0; row 1
        // scores 2, 3, 0.05, 1 and loses columns 2 and 3. Magnitude alone would have pruned columns 1 and 0 of row 0.
        var model = nn.Sequential(("fc", nn.Linear(4, 2, hasBias: false)));
        using (torch.no_grad())
            model.get_parameter("fc.weight")!.copy_(torch.tensor(new float[] { 1, 0.2f, 5, -1.5f, 2, -0.3f, 0.5f, 1 }, [2, 4]));
        Tensor x = torch.tensor(new float[] { 1, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0.1f, 0, 0, 0, 0, 1 }, [4, 4]);
        using var pruner = OneShot(model, new WandaPolicy(new CalibrationSet([x])), 0.5);
        TestModels.Values(pruner.Mask("fc.weight")).Should().Equal(0, 1, 0, 1, 1, 1, 0, 0);
        TestModels.Values(model.get_parameter("fc.weight")!).Should().Equal(0, 0.2f, 0, -1.5f, 2, -0.3f, 0, 0);
    }

    [Fact]
    public void A_recurrent_language_model_is_calibrated_layer_by_layer()
    {
        torch.manual_seed(6);
        var dense = new TinyLanguageModel();
        var tokens = Enumerable.Range(0, 6).Select(i => torch.randint(0, 20, [4, 9], ScalarType.Int64, generator: new torch.Generator((ulong)(10 + i)))).ToList();
        var targets = PruningTargets.Default.Exclude("embedding.*");
        var errors = new Dictionary<string, double>();
        foreach (string method in new[] { "magnitude", "obs" })
        {
            torch.manual_seed(6);
            var model = new TinyLanguageModel();
            model.load_state_dict(dense.state_dict());
            Pruning.Criteria.MaskPolicy? policy = method == "obs" ? new ObsPolicy(new CalibrationSet(tokens)) : null;
            using var pruner = OneShot(model, policy, 0.6, targets: targets);
            foreach (var layer in pruner.Report().Layers)
                (layer.Total - layer.Nonzero).Should().Be(MaskSelector.PrunedCount(0.6, layer.Total), layer.Name);
            using var noGrad = torch.no_grad();
            errors[method] = tokens.Sum(t => dense.call(t).sub(model.call(t)).pow(2).mean().item<float>());
        }
        errors["obs"].Should().BeLessThan(0.8 * errors["magnitude"]);
    }

    [Fact]
    public void The_sensitivity_scan_probes_through_OBS_and_puts_back_the_weights_it_rewrote()
    {
        var model = TrainedMlp(12);
        var original = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var probes = new List<(long Zeros, bool Rewritten)>();
        Pruning.Analysis.SensitivityScan.Run(model, m =>
        {
            Tensor w = m.get_parameter("fc2.weight")!.detach();
            long zeros = w.eq(0).sum().item<long>();
            // The kept weights of an OBS probe are updated, not just masked.
            if (zeros > 0) probes.Add((zeros, w.ne(0).logical_and(w.ne(original["fc2.weight"])).any().item<bool>()));
            return 1;
        }, new Pruning.Analysis.SensitivityOptions { Ratios = [0.5], Policy = new ObsPolicy(new CalibrationSet(Inputs(4, 6))) });
        probes.Should().Equal((MaskSelector.PrunedCount(0.5, 32 * 24), true));
        foreach (var (name, value) in original)
            model.get_parameter(name)!.detach().eq(value).all().item<bool>().Should().BeTrue($"{name} comes back bit for bit");
    }

    [Fact]
    public void Gradual_pruning_with_OBS_calibrates_on_the_recent_training_batches()
    {
        var model = TestModels.Mlp(7);
        var optimizer = TestModels.Optimizer("adam", model);
        using var criterion = new ObsPolicy { WindowBatches = 3 };
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new PolynomialDecaySchedule(0, 0.8, 5, 35, 10), Policy = criterion }, optimizer);
        for (int step = 0; step < 40; step++)
        {
            TestModels.TrainStep(model, optimizer, step);
            pruner.Step();
        }
        pruner.Updates.Select(u => u.Step).Should().Equal(5, 15, 25, 35);
        foreach (var layer in pruner.Report().Layers)
            (layer.Total - layer.Nonzero).Should().Be(MaskSelector.PrunedCount(0.8, layer.Total), layer.Name);
        TestModels.TrainStep(model, optimizer, 40).Should().BeLessThan(1.2f, "the pruned model still fits");
    }

    [Fact]
    public void An_update_without_recent_forward_passes_names_the_parameter()
    {
        var model = TestModels.Mlp(8);
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5, 2), Policy = new ObsPolicy() });
        pruner.Step();
        pruner.Step();
        var act = () => pruner.Step();
        act.Should().Throw<InvalidOperationException>().WithMessage("*training forward pass reached 'fc1.weight'*CalibrationSet*");
    }

    [Fact]
    public void Bad_configurations_are_refused_naming_what_is_wrong()
    {
        var model = TestModels.Mlp(9);
        var calibration = new CalibrationSet(Inputs(1, 1));
        PruningOptions Options(Pruning.Criteria.MaskPolicy c, PruningScope scope = PruningScope.LayerWise) =>
            new() { Schedule = new OneShotSchedule(0.5), Policy = c, Scope = scope };

        FluentActions.Invoking(() => new GradualPruner(model, Options(new ObsPolicy(calibration), PruningScope.Global)))
            .Should().Throw<ArgumentException>().WithMessage("*global*LayerWise*");

        var shared = new ObsPolicy(calibration);
        using (new GradualPruner(model, Options(shared)))
            FluentActions.Invoking(() => new GradualPruner(TestModels.Mlp(10), Options(shared)))
                .Should().Throw<ArgumentException>().WithMessage("*another pruner*");

        var embedding = nn.Sequential(("emb", nn.Embedding(10, 4)), ("fc", nn.Linear(4, 2)));
        FluentActions.Invoking(() => new GradualPruner(embedding, Options(new WandaPolicy(calibration))))
            .Should().Throw<ArgumentException>().WithMessage("*'emb.weight'*Embedding*Targets*");

        var grouped = nn.Sequential(("conv", nn.Conv2d(4, 4, 3, groups: 2)));
        FluentActions.Invoking(() => new GradualPruner(grouped, Options(new ObsPolicy(calibration))))
            .Should().Throw<ArgumentException>().WithMessage("*'conv.weight'*groups 2*");

        FluentActions.Invoking(() => new GradualPruner(nn.LSTM(4, 4), Options(new ObsPolicy(calibration))))
            .Should().Throw<ArgumentException>().WithMessage("*does not take one tensor*forward delegate*");

        FluentActions.Invoking(() => new ObsPolicy { Dampening = -1 }).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*Dampening*");
        FluentActions.Invoking(() => new ObsPolicy { BlockSize = 0 }).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*BlockSize*");
        FluentActions.Invoking(() => new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5), Criterion = new Pruning.Criteria.TaylorCriterion(), Policy = new WandaPolicy(calibration) }))
            .Should().Throw<ArgumentException>().WithMessage("*both a Criterion (Taylor*) and a Policy (Wanda*give one of them*");
    }

    [Fact]
    public void Calibration_problems_at_the_update_name_the_layer()
    {
        using (var pruner = new GradualPruner(TestModels.Mlp(11), new PruningOptions { Schedule = new OneShotSchedule(0.5), Policy = new ObsPolicy(new CalibrationSet([])) }))
            FluentActions.Invoking(() => pruner.Step()).Should().Throw<InvalidOperationException>().WithMessage("*no batches*");

        var bypass = new Bypass();
        using (var pruner = new GradualPruner(bypass, new PruningOptions { Schedule = new OneShotSchedule(0.5), Policy = new ObsPolicy(new CalibrationSet(Inputs(1, 1))) }))
            FluentActions.Invoking(() => pruner.Step()).Should().Throw<InvalidOperationException>().WithMessage("*'hidden'*never ran*Module.call*");

        var singular = nn.Sequential(("fc", nn.Linear(16, 4)));
        var few = new CalibrationSet([torch.randn(3, 16)]);
        using (var pruner = new GradualPruner(singular, new PruningOptions { Schedule = new OneShotSchedule(0.5), Policy = new ObsPolicy(few) { Dampening = 0 } }))
            FluentActions.Invoking(() => pruner.Step()).Should().Throw<InvalidOperationException>().WithMessage("*'fc.weight'*singular*Dampening*");
    }

    /// <summary>Embedding(20, 8) → LSTM(8, 12, 2 layers, batch first) → Linear(12, 20), taking token batches.</summary>
    private sealed class TinyLanguageModel : nn.Module<Tensor, Tensor>
    {
        private readonly Embedding embedding = nn.Embedding(20, 8);
        private readonly LSTM lstm = nn.LSTM(8, 12, 2, batchFirst: true);
        private readonly Linear decoder = nn.Linear(12, 20);

        public TinyLanguageModel() : base("tiny_lm") => RegisterComponents();

        public override Tensor forward(Tensor tokens) => decoder.call(lstm.call(embedding.call(tokens)).Item1);
    }

    /// <summary>Calls its second layer with forward(), which skips hooks.</summary>
    private sealed class Bypass : nn.Module<Tensor, Tensor>
    {
        private readonly Linear input = nn.Linear(16, 8);
        private readonly Linear hidden = nn.Linear(8, 4);

        public Bypass() : base("bypass") => RegisterComponents();

        public override Tensor forward(Tensor x) => hidden.forward(input.call(x));
    }
}
