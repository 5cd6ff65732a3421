using Pruning.Criteria;
using Pruning.Scheduling;
using Pruning.Selection;
using Pruning.Targets;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests;

[Collection(TorchCollection.Name)]
public sealed class GradualPrunerTests
{
    private static PruningOptions Options(PruningSchedule schedule, PruningScope scope = PruningScope.LayerWise) =>
        new() { Schedule = schedule, Scope = scope };

    [Theory]
    [InlineData(0.5)]
    [InlineData(0.9)]
    [InlineData(0.97)]
    public void LayerWise_EachTensorEndsAtRoundOfTargetTimesN(double sparsity)
    {
        var model = TestModels.Mlp(1);
        var optimizer = TestModels.Optimizer("sgd-momentum", model);
        using var pruner = new GradualPruner(model, Options(new PolynomialDecaySchedule(0, sparsity, 2, 20, 3)), optimizer);

        for (int step = 0; step < 25; step++)
        {
            TestModels.TrainStep(model, optimizer, step);
            pruner.Step();
        }

        var report = pruner.Report();
        foreach (var layer in report.Layers)
        {
            (layer.Total - layer.Nonzero).Should().Be(MaskSelector.PrunedCount(sparsity, layer.Total), layer.Name);
            layer.MaskedNonzero.Should().Be(0);
        }
        report.Layers.Select(l => l.Name).Should().Equal("fc1.weight", "fc2.weight", "fc3.weight");
    }

    [Theory]
    [InlineData(1, 0.5, 0)]
    [InlineData(7, 0.5, 4)]
    [InlineData(7, 0.9999, 6)]
    [InlineData(255, 0.9, 230)]
    [InlineData(257, 0.9, 231)]
    [InlineData(257, 0.9999, 256)]
    public void AwkwardSizes_GetExactlyTheRoundedCount_AndKeepOneWeight(int n, double sparsity, int expectedZeros)
    {
        torch.manual_seed(n);
        var model = nn.Sequential(("fc", nn.Linear(n, 1)));
        using var pruner = new GradualPruner(model, Options(new OneShotSchedule(sparsity)));
        pruner.Step();
        TestModels.Values(model.get_parameter("fc.weight")!).Count(v => v == 0).Should().Be(expectedZeros);
    }

    [Fact]
    public void Global_HitsTheModelWideCount_WithOneThresholdAcrossLayers()
    {
        var model = TestModels.Mlp(2);
        using (torch.no_grad())
            model.get_parameter("fc3.weight")!.mul_(10); // make one layer clearly more important
        using var pruner = new GradualPruner(model, Options(new OneShotSchedule(0.8), PruningScope.Global));

        pruner.Step();

        var report = pruner.Report();
        (report.Total - report.Nonzero).Should().Be(MaskSelector.PrunedCount(0.8, report.Total));
        report.Layers.Single(l => l.Name == "fc3.weight").Sparsity.Should().BeLessThan(0.5);
        report.Layers.Single(l => l.Name == "fc2.weight").Sparsity.Should().BeGreaterThan(0.8, "fc2 starts with the smallest weights (fan-in 32)");
        float largestPruned = 0, smallestKept = float.MaxValue;
        using var original = TestModels.Mlp(2);
        using (torch.no_grad())
            original.get_parameter("fc3.weight")!.mul_(10);
        foreach (string name in pruner.ParameterNames)
        {
            float[] before = TestModels.Values(original.get_parameter(name)!);
            float[] after = TestModels.Values(model.get_parameter(name)!);
            for (int i = 0; i < before.Length; i++)
            {
                if (after[i] == 0) largestPruned = Math.Max(largestPruned, Math.Abs(before[i]));
                else smallestKept = Math.Min(smallestKept, Math.Abs(before[i]));
            }
        }
        largestPruned.Should().BeLessThanOrEqualTo(smallestKept);
    }

    [Fact]
    public void NothingIsPrunedBeforeTheBeginStep_AndUpdatesFireOnScheduleOnly()
    {
        var model = TestModels.Mlp(3);
        var optimizer = TestModels.Optimizer("adam", model);
        var schedule = new PolynomialDecaySchedule(0.1, 0.6, beginStep: 5, endStep: 15, frequency: 4);
        using var pruner = new GradualPruner(model, Options(schedule), optimizer);
        var updateSteps = new List<long>();

        for (int step = 0; step < 20; step++)
        {
            TestModels.TrainStep(model, optimizer, step);
            if (pruner.Step() is { } update) updateSteps.Add(update.Step);
            if (step < 5) pruner.Report().Sparsity.Should().Be(0);
        }

        updateSteps.Should().Equal(5, 9, 13, 15);
        pruner.Updates.Select(u => u.Layers[0].TargetSparsity).Should().Equal(schedule.SparsityAt(5), schedule.SparsityAt(9), schedule.SparsityAt(13), 0.6);
    }

    [Fact]
    public void Churn_CountsNewlyPrunedAndRevivedWeights()
    {
        var model = TestModels.Mlp(4);
        var optimizer = TestModels.Optimizer("sgd-momentum", model);
        using var pruner = new GradualPruner(model, Options(new PolynomialDecaySchedule(0.2, 0.6, 0, 10, 5)), optimizer);

        for (int step = 0; step <= 10; step++)
        {
            TestModels.TrainStep(model, optimizer, step);
            pruner.Step();
        }

        pruner.Updates.Should().HaveCount(3);
        var fc1 = pruner.Updates.Select(u => u.Layers.Single(l => l.Name == "fc1.weight")).ToList();
        fc1[0].NewlyPruned.Should().Be(MaskSelector.PrunedCount(0.2, 512));
        fc1[0].Revived.Should().Be(0);
        for (int i = 1; i < fc1.Count; i++)
            (fc1[i].NewlyPruned - fc1[i].Revived).Should().Be(fc1[i].Pruned - fc1[i - 1].Pruned);
        // Magnitude pruning never revives: pruned weights are exactly zero, the smallest magnitude there is.
        fc1.Should().OnlyContain(l => l.Revived == 0);
    }

    /// <summary>The per-element optimizer buffers of <paramref name="parameter"/> (momentum, Adam's m and v, …).</summary>
    private static List<Tensor> StateBuffers(optim.Optimizer optimizer, Parameter parameter)
    {
        int index = optimizer.parameters().ToList().FindIndex(p => p.Handle == parameter.Handle);
        var state = ((OptimizerHelper)optimizer).state_dict().State[index];
        return state.GetType().GetFields().Where(f => f.FieldType == typeof(Tensor))
            .Select(f => (Tensor?)f.GetValue(state)).Where(t => t is not null && t.shape.SequenceEqual(parameter.shape)).Select(t => t!).ToList();
    }

    [Fact]
    public void Churn_CountsRevivals_WhenTheCriterionBringsWeightsBack()
    {
        var model = TestModels.Mlp(42);
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new ConstantSparsitySchedule(0.5, 0, 1), Criterion = new NoisyMagnitude(seed: 1) });
        pruner.Step();
        var second = pruner.Step()!.Layers.Single(l => l.Name == "fc2.weight");
        second.Revived.Should().BeGreaterThan(0);
        second.NewlyPruned.Should().Be(second.Revived, "the target did not change");
        second.Pruned.Should().Be(MaskSelector.PrunedCount(0.5, second.Total));
        TestModels.Values(model.get_parameter("fc2.weight")!).Count(v => v == 0).Should().Be((int)(second.Pruned + second.Revived), "revived weights restart from zero");
    }

    [Theory]
    [InlineData("sgd-momentum")]
    [InlineData("nesterov")]
    [InlineData("adam")]
    [InlineData("adamw")]
    [InlineData("rmsprop")]
    public void MaskedWeights_AreExactlyZeroAfterEveryStep_AndTheirOptimizerStateIsClearedAtEveryUpdate(string kind)
    {
        var model = TestModels.Mlp(5);
        var optimizer = TestModels.Optimizer(kind, model);
        using var pruner = new GradualPruner(model, Options(new PolynomialDecaySchedule(0, 0.8, 0, 100, 10)), optimizer);
        var fc1 = model.get_parameter("fc1.weight")!;
        int updates = 0;

        for (int step = 0; step < 200; step++)
        {
            TestModels.TrainStep(model, optimizer, step);
            var update = pruner.Step();
            pruner.Report().MaskedNonzero.Should().Be(0, $"after step {step}");
            if (update is null || step == 0) continue;

            updates++;
            float[] weights = TestModels.Values(fc1);
            long liveState = 0;
            var buffers = StateBuffers(optimizer, fc1);
            buffers.Should().NotBeEmpty();
            foreach (Tensor buffer in buffers)
            {
                float[] values = TestModels.Values(buffer);
                Enumerable.Range(0, values.Length).Where(i => weights[i] == 0).Should().OnlyContain(i => values[i] == 0,
                    $"the optimizer must not keep momentum or moments for weights pruned at step {step}");
                liveState += values.Count(v => v != 0);
            }
            liveState.Should().BeGreaterThan(0, "the state of live weights is left alone");
        }

        updates.Should().Be(10);
        TestModels.Values(fc1).Count(w => w == 0).Should().Be((int)MaskSelector.PrunedCount(0.8, fc1.numel()));
    }

    [Theory]
    [InlineData("sgd-momentum")]
    [InlineData("adam")]
    [InlineData("adamw")]
    public void ClearingStateOnlyAtUpdates_TrainsExactlyLikeClearingItEveryStep(string kind)
    {
        // Optimizer state is element-wise and pruned weights are re-zeroed after every step, so state at pruned
        // positions can only matter when a mask update revives them, which is when the pruner clears it.
        Dictionary<string, float[]> Run(bool clearEveryStep)
        {
            var model = TestModels.Mlp(41);
            var optimizer = TestModels.Optimizer(kind, model);
            // A criterion with noise, so that updates revive weights (magnitude alone never revives a zero).
            var options = new PruningOptions { Schedule = new ConstantSparsitySchedule(0.7, 3, 20), Criterion = new NoisyMagnitude(seed: 5) };
            using var pruner = new GradualPruner(model, options, optimizer);
            for (int step = 0; step < 120; step++)
            {
                TestModels.TrainStep(model, optimizer, step);
                pruner.Step();
                if (!clearEveryStep) continue;
                using var noGrad = torch.no_grad();
                foreach (string name in pruner.ParameterNames)
                {
                    var weight = model.get_parameter(name)!;
                    using var keep = weight.ne(0).to(weight.dtype);
                    foreach (Tensor buffer in StateBuffers(optimizer, weight)) buffer.mul_(keep);
                }
            }
            return model.named_parameters().ToDictionary(p => p.name, p => TestModels.Values(p.parameter));
        }

        var atUpdates = Run(clearEveryStep: false);
        atUpdates.Should().NotBeEmpty();
        var everyStep = Run(clearEveryStep: true);
        foreach (var (name, values) in everyStep)
            atUpdates[name].Should().Equal(values, name);
    }

    [Fact]
    public void WithoutTheOptimizer_WeightsAreStillZeroButItsStateIsNotTouched()
    {
        var model = TestModels.Mlp(6);
        var optimizer = TestModels.Optimizer("adam", model);
        using var pruner = new GradualPruner(model, Options(new OneShotSchedule(0.5)));
        for (int step = 0; step < 5; step++)
        {
            TestModels.TrainStep(model, optimizer, step);
            pruner.Step();
        }
        pruner.Report().MaskedNonzero.Should().Be(0);
        var state = (TorchSharp.Modules.Adam.State)((OptimizerHelper)optimizer).state_dict().State[0];
        TestModels.Values(state.exp_avg).Count(v => v == 0).Should().BeLessThan(10);
    }

    [Fact]
    public void AnAllOnesMask_ChangesNeitherOutputsNorGradients()
    {
        var pruned = TestModels.Mlp(7);
        var plain = TestModels.Mlp(7);
        using var pruner = new GradualPruner(pruned, Options(new OneShotSchedule(0.0)));
        pruner.Step().Should().NotBeNull();

        var (x, y) = TestModels.Batch(1);
        var lossPruned = nn.functional.cross_entropy(pruned.call(x), y);
        var lossPlain = nn.functional.cross_entropy(plain.call(x), y);
        lossPruned.backward();
        lossPlain.backward();

        lossPruned.item<float>().Should().Be(lossPlain.item<float>());
        foreach (var (name, p) in plain.named_parameters())
        {
            TestModels.Values(pruned.get_parameter(name)!).Should().Equal(TestModels.Values(p), name);
            TestModels.Values(pruned.get_parameter(name)!.grad!).Should().Equal(TestModels.Values(p.grad!), name);
        }
    }

    [Fact]
    public void TheParameterObjectsKeepTheirIdentity()
    {
        var model = TestModels.Mlp(8);
        var before = model.parameters().ToList();
        using var pruner = new GradualPruner(model, Options(new OneShotSchedule(0.5)));
        pruner.Step();
        model.parameters().Should().Equal(before, (a, b) => ReferenceEquals(a, b));
    }

    [Fact]
    public void Strip_KeepsOutputsIdentical_AndLeavesAPlainModel()
    {
        var model = TestModels.Mlp(9);
        var optimizer = TestModels.Optimizer("sgd-momentum", model);
        var pruner = new GradualPruner(model, Options(new PolynomialDecaySchedule(0, 0.75, 0, 10, 2)), optimizer);
        for (int step = 0; step < 12; step++)
        {
            TestModels.TrainStep(model, optimizer, step);
            pruner.Step();
        }
        var (x, _) = TestModels.Batch(2);
        float[] before = TestModels.Values(model.call(x));

        var report = pruner.Strip();

        TestModels.Values(model.call(x)).Should().Equal(before);
        report.Layers.Should().OnlyContain(l => l.MaskedNonzero == 0);
        report.Layers.Sum(l => l.Total - l.Nonzero).Should().Be(report.Layers.Sum(l => MaskSelector.PrunedCount(0.75, l.Total)));
        model.state_dict().Keys.Should().BeEquivalentTo(TestModels.Mlp(0).state_dict().Keys);
        ((Action)(() => pruner.Step())).Should().Throw<ObjectDisposedException>();

        string path = Path.Combine(Path.GetTempPath(), $"stripped-{Guid.NewGuid():N}.bin");
        try
        {
            model.save(path);
            var plain = TestModels.Mlp(123);
            plain.load(path);
            TestModels.Values(plain.call(x)).Should().Equal(before, "a pruned model loads into a plain one");
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void LstmWeights_ArePrunedToTheirTargets()
    {
        torch.manual_seed(10);
        var lstm = nn.LSTM(8, 16, numLayers: 2);
        var optimizer = torch.optim.Adam(lstm.parameters(), 0.01);
        using var pruner = new GradualPruner(lstm, Options(new PolynomialDecaySchedule(0, 0.9, 0, 6, 2)), optimizer);
        for (int step = 0; step < 8; step++)
        {
            using var scope = torch.NewDisposeScope();
            optimizer.zero_grad();
            var (output, _, _) = lstm.call(torch.randn(5, 3, 8));
            output.pow(2).mean().backward();
            optimizer.step();
            pruner.Step();
        }
        var report = pruner.Report();
        report.Layers.Select(l => l.Name).Should().Equal("weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1");
        foreach (var layer in report.Layers)
            (layer.Total - layer.Nonzero).Should().Be(MaskSelector.PrunedCount(0.9, layer.Total), layer.Name);
    }

    [Fact]
    public void ScheduleOverrides_GiveOneLayerItsOwnTarget()
    {
        var model = TestModels.Mlp(11);
        var options = new PruningOptions
        {
            Schedule = new OneShotSchedule(0.9),
            Overrides = new Dictionary<string, ParameterOverride> { ["fc3.weight"] = new() { Schedule = new OneShotSchedule(0.5) } },
        };
        using var pruner = new GradualPruner(model, options);
        pruner.Step();
        var report = pruner.Report();
        report.Layers.Single(l => l.Name == "fc3.weight").Sparsity.Should().Be(0.5);
        report.Layers.Single(l => l.Name == "fc2.weight").Sparsity.Should().BeApproximately(0.9, 0.002);
    }

    [Fact]
    public void Plan_ListsEveryUpdateStepAndTargetBeforeTraining()
    {
        var model = TestModels.Mlp(12);
        var options = new PruningOptions
        {
            Schedule = new PolynomialDecaySchedule(0.2, 0.8, 100, 110, 2),
            Overrides = new Dictionary<string, ParameterOverride> { ["fc3.weight"] = new() { Schedule = new OneShotSchedule(0.5, 105) } },
        };
        using var pruner = new GradualPruner(model, options);
        var plan = pruner.Plan();
        plan.Steps.Select(s => s.Step).Should().Equal(100, 102, 104, 105, 106, 108, 110);
        plan.Steps.Single(s => s.Step == 102).Targets[0].Should().BeApproximately(0.4928, 1e-12);
        double.IsNaN(plan.Steps.Single(s => s.Step == 102).Targets[2]).Should().BeTrue();
        plan.Steps.Single(s => s.Step == 105).Targets[2].Should().Be(0.5);
        plan.ToString().Should().Contain("fc1.weight").And.Contain("49.28%").And.Contain("80.00%");
        pruner.CurrentStep.Should().Be(0, "a dry run changes nothing");
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    public void NonFiniteWeights_AtAnUpdate_AreAnErrorNamingTheParameter(float bad)
    {
        var model = TestModels.Mlp(13);
        using (torch.no_grad())
            model.get_parameter("fc2.weight")![3, 4] = torch.tensor(bad);
        using var pruner = new GradualPruner(model, Options(new OneShotSchedule(0.5)));
        var act = () => pruner.Step();
        act.Should().Throw<InvalidOperationException>().WithMessage("*'fc2.weight'*NaN or infinite*step 0*");
    }

    [Fact]
    public void BadOptions_AreRejectedWithTheirNames()
    {
        var model = TestModels.Mlp(14);
        var unknown = () => new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(0.5),
            Overrides = new Dictionary<string, ParameterOverride> { ["fc9.weight"] = new() { Schedule = new OneShotSchedule(0.1) } },
        });
        unknown.Should().Throw<ArgumentException>().WithMessage("*'fc9.weight'*");

        var globalWithOverrides = () => new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(0.5),
            Scope = PruningScope.Global,
            Overrides = new Dictionary<string, ParameterOverride> { ["fc1.weight"] = new() { Schedule = new OneShotSchedule(0.1) } },
        });
        globalWithOverrides.Should().Throw<ArgumentException>().WithMessage("*Global*");

        var noTarget = () => new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5), Targets = PruningTargets.Default.Include("conv*") });
        noTarget.Should().Throw<ArgumentException>().WithMessage("*'conv*'*");

        var unsupported = () => new GradualPruner(model, Options(new OneShotSchedule(0.5)), torch.optim.Rprop(model.parameters()));
        unsupported.Should().Throw<ArgumentException>().WithMessage("*Rprop*").Which.ParamName.Should().Be("optimizer");

        var otherModel = () => new GradualPruner(model, Options(new OneShotSchedule(0.5)), TestModels.Optimizer("adam", TestModels.Mlp(15)));
        otherModel.Should().Throw<ArgumentException>().WithMessage("*does not train 'fc1.weight'*");
    }

    [Fact]
    public void ACriterionReturningTheWrongShape_IsAnError()
    {
        var model = TestModels.Mlp(16);
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5), Criterion = new FlatCriterion() });
        var act = () => pruner.Step();
        act.Should().Throw<InvalidOperationException>().WithMessage("*FlatCriterion*shape*'fc1.weight'*");
    }

    [Fact]
    public void ACustomCriterion_DecidesWhatIsPruned()
    {
        var model = TestModels.Mlp(17);
        float[] before = TestModels.Values(model.get_parameter("fc1.weight")!);
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5), Criterion = new LargestFirst(), Targets = PruningTargets.Default.Include("fc1.weight") });
        pruner.Step();
        float[] after = TestModels.Values(model.get_parameter("fc1.weight")!);
        float keptMax = after.Where(v => v != 0).Max(Math.Abs);
        float prunedMin = before.Where((v, i) => after[i] == 0).Min(Math.Abs);
        keptMax.Should().BeLessThanOrEqualTo(prunedMin, "this criterion prunes the largest weights");
    }

    [Fact]
    public void APrunedModel_StillLearns()
    {
        var model = TestModels.Mlp(18);
        var optimizer = TestModels.Optimizer("adam", model);
        using var pruner = new GradualPruner(model, Options(new PolynomialDecaySchedule(0, 0.8, 50, 250, 25)), optimizer);
        float early = 0, late = 0;
        for (int step = 0; step < 400; step++)
        {
            float loss = TestModels.TrainStep(model, optimizer, step % 100);
            pruner.Step();
            if (step < 20) early += loss / 20;
            if (step >= 380) late += loss / 20;
        }
        var (x, y) = TestModels.Batch(999, size: 2000);
        float accuracy = model.call(x).argmax(1).eq(y).to(ScalarType.Float32).mean().item<float>();

        pruner.Report().Sparsity.Should().BeApproximately(0.8, 0.001);
        late.Should().BeLessThan(early / 3);
        accuracy.Should().BeGreaterThan(0.85f, "the labels follow a simple rule the 80 %-sparse MLP can learn");
    }

    [Fact]
    public void Report_WritesTensorBoardScalars()
    {
        var model = TestModels.Mlp(19);
        using var pruner = new GradualPruner(model, Options(new OneShotSchedule(0.5)));
        pruner.Step();
        string dir = Directory.CreateTempSubdirectory("pruning-tb-").FullName;
        try
        {
            var writer = torch.utils.tensorboard.SummaryWriter(dir);
            pruner.Report().WriteScalars(writer);
            Directory.GetFiles(dir, "events.out.tfevents.*", SearchOption.AllDirectories).Should().ContainSingle()
                .Which.Should().Match(f => new FileInfo(f).Length > 100);
        }
        finally { Directory.Delete(dir, true); }
    }

    private sealed class NoisyMagnitude(int seed) : IPruningCriterion
    {
        private readonly Random _random = new(seed);

        public Tensor Score(string parameterName, Tensor weight)
        {
            var noise = Enumerable.Range(0, (int)weight.numel()).Select(_ => (float)_random.NextDouble() * 0.1f).ToArray();
            return weight.abs() + torch.tensor(noise).reshape(weight.shape);
        }

        public override string ToString() => "NoisyMagnitude";
    }

    private sealed class FlatCriterion : IPruningCriterion
    {
        public Tensor Score(string parameterName, Tensor weight) => weight.abs().flatten();
        public override string ToString() => nameof(FlatCriterion);
    }

    private sealed class LargestFirst : IPruningCriterion
    {
        public Tensor Score(string parameterName, Tensor weight) => weight.abs().neg();
    }
}
