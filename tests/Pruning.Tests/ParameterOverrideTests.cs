using Pruning.Scheduling;
using Pruning.Selection;
using TorchSharp;

namespace Pruning.Tests;

[Collection(TorchCollection.Name)]
public sealed class ParameterOverrideTests
{
    private static long Zeros(GradualPruner pruner, string name) => pruner.Report().Layers.Single(l => l.Name == name) is var l ? l.Total - l.Nonzero : 0;

    [Fact]
    public void FinalSparsity_GivesALayerItsOwnFinalTarget_OnTheSameSchedule()
    {
        var model = TestModels.Mlp(61);
        using var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new PolynomialDecaySchedule(0.2, 0.9, 0, 10, 5),
            Overrides = ParameterOverride.FinalSparsities(new Dictionary<string, double> { ["fc3.weight"] = 0.5, ["fc1.weight"] = 0.1 }),
        });
        for (int step = 0; step <= 10; step++) pruner.Step();

        Zeros(pruner, "fc3.weight").Should().Be(MaskSelector.PrunedCount(0.5, 72));
        Zeros(pruner, "fc1.weight").Should().Be(MaskSelector.PrunedCount(0.1, 512), "an override below s_i lowers s_i too");
        Zeros(pruner, "fc2.weight").Should().Be(MaskSelector.PrunedCount(0.9, 768));
        pruner.Plan().Steps.Single(s => s.Step == 0).Targets.Should().Equal(0.1, 0.2, 0.2);
    }

    [Fact]
    public void Bounds_ClampLayerWiseTargets()
    {
        var model = TestModels.Mlp(62);
        using var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(0.9),
            Overrides = new Dictionary<string, ParameterOverride> { ["fc3.weight"] = new() { Bounds = new SparsityRange(0, 0.6) } },
        });
        pruner.Step();
        Zeros(pruner, "fc3.weight").Should().Be(MaskSelector.PrunedCount(0.6, 72));
        pruner.Report().Layers.Single(l => l.Name == "fc3.weight").TargetSparsity.Should().Be(0.6);
    }

    [Fact]
    public void Bounds_ConstrainAGlobalRanking_AndKeepTheTotalExact()
    {
        var model = TestModels.Mlp(2);
        using var unbounded = new GradualPruner(TestModels.Mlp(2), new PruningOptions { Schedule = new OneShotSchedule(0.8), Scope = PruningScope.Global });
        unbounded.Step();
        unbounded.Report().Layers.Single(l => l.Name == "fc2.weight").Sparsity.Should().BeGreaterThan(0.85, "unbounded, fc2 (the smallest weights) takes more than its share");

        using var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(0.8),
            Scope = PruningScope.Global,
            Overrides = new Dictionary<string, ParameterOverride>
            {
                ["fc2.weight"] = new() { Bounds = new SparsityRange(0, 0.85) },
                ["fc3.weight"] = new() { Bounds = new SparsityRange(0.5, 0.9) },
            },
        });
        pruner.Step();

        var report = pruner.Report();
        Zeros(pruner, "fc2.weight").Should().Be(MaskSelector.PrunedCount(0.85, 768));
        (report.Total - report.Nonzero).Should().Be(MaskSelector.PrunedCount(0.8, report.Total));
        report.Layers.Single(l => l.Name == "fc3.weight").Sparsity.Should().BeInRange(0.5, 0.9);
    }

    [Fact]
    public void BadBudgets_AreRejectedWithTheirNames()
    {
        var model = TestModels.Mlp(63);
        var unknown = () => new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5), Overrides = ParameterOverride.FinalSparsities(new Dictionary<string, double> { ["fc7.weight"] = 0.3 }) });
        unknown.Should().Throw<ArgumentException>().WithMessage("*'fc7.weight'*");
        var global = () => new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5), Scope = PruningScope.Global, Overrides = ParameterOverride.FinalSparsities(new Dictionary<string, double> { ["fc1.weight"] = 0.3 }) });
        global.Should().Throw<ArgumentException>().WithMessage("*'fc1.weight'*Global*Bounds*").Which.ParamName.Should().Be("options");
        var both = () => new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(0.5),
            Overrides = new Dictionary<string, ParameterOverride> { ["fc1.weight"] = new() { FinalSparsity = 0.3, Schedule = new OneShotSchedule(0.2) } },
        });
        both.Should().Throw<ArgumentException>().WithMessage("*'fc1.weight'*has both*");
        var outOfRange = () => new ParameterOverride { FinalSparsity = 1.2 };
        outOfRange.Should().Throw<ArgumentOutOfRangeException>().Which.Message.Should().Contain("1.2");
        ((Action)(() => _ = new SparsityRange(0.6, 0.4))).Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("max");
        ((Action)(() => _ = new SparsityRange(-0.1, 0.4))).Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("min");
    }
}
