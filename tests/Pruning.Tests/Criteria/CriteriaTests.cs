using Pruning.Criteria;
using Pruning.Scheduling;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Criteria;

[Collection(TorchCollection.Name)]
public sealed class CriteriaTests
{
    /// <summary>A 1×4 weight with fixed values; each step's gradient is set exactly to the given row.</summary>
    private static (Sequential Model, Parameter Weight) FourWeights(params float[] weights)
    {
        var model = nn.Sequential(("fc", nn.Linear(4, 1, hasBias: false)));
        var weight = model.get_parameter("fc.weight")!;
        using (torch.no_grad())
            weight.copy_(torch.tensor(weights).reshape(1, 4));
        return (model, weight);
    }

    private static void SetGradient(Sequential model, Parameter weight, params float[] gradient)
    {
        model.zero_grad();
        (weight * torch.tensor(gradient).reshape(1, 4)).sum().backward(); // d/dw Σ w·g = g
    }

    private static float[] RunAndPrune(IPruningCriterion criterion, PruningSchedule schedule, float[] weights, params float[][] gradients)
    {
        var (model, weight) = FourWeights(weights);
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = schedule, Criterion = criterion });
        foreach (float[] g in gradients)
        {
            SetGradient(model, weight, g);
            pruner.Step();
        }
        return TestModels.Values(weight);
    }

    [Fact]
    public void Taylor_AveragesAbsWeightTimesGradientOverTheWindow()
    {
        // |w·g| per step: [4, 0.2, 3, 0.04] and [0, 0.2, 3, 0.04]; means [2, 0.2, 3, 0.04]: prune indices 3 and 1.
        // Magnitude would prune indices 0 and 1.
        float[] after = RunAndPrune(new TaylorCriterion(), new OneShotSchedule(0.5, step: 1), [1, 2, 3, 4], [4, 0.1f, 1, 0.01f], [0, 0.1f, 1, 0.01f]);
        after.Should().Equal(1, 0, 3, 0);
    }

    [Fact]
    public void Fisher_IsHalfMeanSquaredGradientTimesWeightSquared()
    {
        // ½·g²·w² = [0.5, 2, 0.045, 8]: prune indices 2 and 0, where magnitude would prune 0 and 1.
        float[] after = RunAndPrune(new FisherCriterion(), new OneShotSchedule(0.5, step: 0), [1, 2, 3, 4], [1, 1, 0.1f, 1]);
        after.Should().Equal(0, 2, 0, 4);
    }

    [Fact]
    public void TheWindow_RestartsAfterEachMaskUpdate()
    {
        // Updates at steps 1 (25 %) and 3 (50 %). Steps 0-1 rank index 0 lowest; steps 2-3 rank index 2 lowest among
        // the rest. Over all four steps index 3 would be lowest instead (means 5.5, 5.5, 5).
        var schedule = new PolynomialDecaySchedule(0.25, 0.5, beginStep: 1, endStep: 3, frequency: 2, power: 1);
        float[] after = RunAndPrune(new TaylorCriterion(), schedule, [1, 1, 1, 1],
            [0.1f, 1, 10, 5], [0.1f, 1, 10, 5], [0, 10, 1, 5], [0, 10, 1, 5]);
        after.Should().Equal(0, 1, 0, 1);
    }

    [Fact]
    public void AGradientCriterion_WithoutAnyGradient_SaysWhatIsMissing()
    {
        var (model, _) = FourWeights(1, 2, 3, 4);
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5), Criterion = new FisherCriterion() });
        var act = () => pruner.Step();
        act.Should().Throw<InvalidOperationException>().WithMessage("*Fisher has seen no gradient for 'fc.weight'*");
    }

    [Fact]
    public void Random_IsDeterministicPerSeed_AndUniform()
    {
        using var weight = torch.zeros(100, 100);
        float[] a = TestModels.Values(new RandomCriterion(7).Score("w", weight));
        float[] b = TestModels.Values(new RandomCriterion(7).Score("w", weight));
        float[] c = TestModels.Values(new RandomCriterion(8).Score("w", weight));
        a.Should().Equal(b);
        a.Should().NotEqual(c);
        a.Should().OnlyContain(v => v >= 0 && v < 1);
        a.Average().Should().BeApproximately(0.5f, 0.02f);
        a.Distinct().Count().Should().BeGreaterThan(9_900);
    }
}

/// <summary>The custom criterion shown in the README, compiled and checked here so the README stays right.</summary>
public sealed class RowRelativeMagnitude : IPruningCriterion
{
    // |w| relative to the largest |w| of its row: every output neuron keeps its own strongest inputs (docs/how-to/extend-the-pruner.md).
    public Tensor Score(string parameterName, Tensor weight)
    {
        using var epsilon = 1e-12.ToScalar();
        using var one = 1.ToScalar();
        using var magnitude = weight.abs();
        var (rowMax, indices) = magnitude.max(1, keepdim: true);
        using (indices)
        using (rowMax)
        using (var denominator = rowMax.add(epsilon, one))
            return magnitude.div(denominator);
    }
}

[Collection(TorchCollection.Name)]
public sealed class ReadmeCriterionTests
{
    [Fact]
    public void TheReadmesCustomCriterion_KeepsEachRowsStrongestWeight()
    {
        var model = nn.Sequential(("fc", nn.Linear(3, 2, hasBias: false)));
        using (torch.no_grad())
            model.get_parameter("fc.weight")!.copy_(torch.tensor(new float[] { 10, 20, 40, 0.1f, 0.3f, 0.2f }).reshape(2, 3));
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5), Criterion = new RowRelativeMagnitude() });
        pruner.Step();
        // Relative scores: [0.25, 0.5, 1] and [0.33, 1, 0.67]; plain magnitude would have pruned the whole second row.
        TestModels.Values(model.get_parameter("fc.weight")!).Should().Equal(0, 0, 40, 0, 0.3f, 0.2f);
    }
}
