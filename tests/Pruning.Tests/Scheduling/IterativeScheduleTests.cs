using Pruning.Scheduling;

namespace Pruning.Tests.Scheduling;

public class IterativeScheduleTests
{
    [Fact]
    public void Stages_are_cut_at_their_start_steps_and_held_in_between()
    {
        var schedule = new IterativeSchedule([0.3, 0.5, 0.7], beginStep: 100, stepsPerStage: 50);
        schedule.UpdateSteps().Should().Equal((100L, 0.3), (150L, 0.5), (200L, 0.7));
        schedule.SparsityAt(99).Should().Be(0);
        schedule.SparsityAt(100).Should().Be(0.3);
        schedule.SparsityAt(149).Should().Be(0.3);
        schedule.SparsityAt(150).Should().Be(0.5);
        schedule.SparsityAt(10_000).Should().Be(0.7);
        schedule.IsUpdateStep(125).Should().BeFalse();
        schedule.IsUpdateStep(250).Should().BeFalse("the last stage is cut once and then held");
        schedule.EndStep.Should().Be(200);
        schedule.ToString().Should().Be("Iterative(stages=[0.3, 0.5, 0.7], begin=100, stepsPerStage=50)");
    }

    [Fact]
    public void Per_layer_targets_scale_the_stages()
    {
        var schedule = (IterativeSchedule)new IterativeSchedule([0.3, 0.6, 0.9], 0, 10).WithFinalSparsity(0.6);
        schedule.Stages.Should().Equal([0.2, 0.4, 0.6], (a, b) => Math.Abs(a - b) < 1e-12);
    }

    [Fact]
    public void A_pruner_follows_the_stages()
    {
        var model = TestModels.Mlp(seed: 2);
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new IterativeSchedule([0.25, 0.5, 0.75], 2, 3) });
        var sparsities = new List<double>();
        for (int step = 0; step < 12; step++)
        {
            pruner.Step();
            sparsities.Add(Math.Round(pruner.Report().Sparsity, 2));
        }
        sparsities.Should().Equal(0, 0, 0.25, 0.25, 0.25, 0.5, 0.5, 0.5, 0.75, 0.75, 0.75, 0.75);
        pruner.Updates.Select(u => u.Step).Should().Equal(2, 5, 8);
    }

    [Theory]
    [InlineData(new double[0], "*at least one stage*")]
    [InlineData(new[] { 0.5, 0.3 }, "*increase strictly*")]
    [InlineData(new[] { 0.5, 1.0 }, "*[0, 1)*")]
    public void Bad_stages_are_refused(double[] stages, string message)
    {
        FluentActions.Invoking(() => new IterativeSchedule(stages, 0, 10)).Should().Throw<ArgumentException>().WithMessage(message);
    }
}
