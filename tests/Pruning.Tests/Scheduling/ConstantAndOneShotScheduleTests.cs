using Pruning.Scheduling;

namespace Pruning.Tests.Scheduling;

public sealed class ConstantAndOneShotScheduleTests
{
    [Fact]
    public void Constant_UpdatesEveryFrequencyStepsToTheSameTarget()
    {
        var schedule = new ConstantSparsitySchedule(0.5, beginStep: 10, frequency: 5, endStep: 30);
        schedule.SparsityAt(9).Should().Be(0);
        schedule.SparsityAt(10).Should().Be(0.5);
        schedule.SparsityAt(1000).Should().Be(0.5);
        schedule.UpdateSteps().Select(u => u.Step).Should().Equal(10, 15, 20, 25, 30);
        schedule.IsUpdateStep(35).Should().BeFalse();
    }

    [Fact]
    public void Constant_WithoutAnEnd_ListsUpdatesOnlyThroughTheGivenStep() =>
        new ConstantSparsitySchedule(0.3, 0, 100).UpdateSteps(throughStep: 350).Select(u => u.Step).Should().Equal(0, 100, 200, 300);

    [Fact]
    public void OneShot_UpdatesOnceAndHoldsTheTarget()
    {
        var schedule = new OneShotSchedule(0.7, step: 3);
        Enumerable.Range(0, 10).Where(t => schedule.IsUpdateStep(t)).Should().Equal(3);
        schedule.SparsityAt(2).Should().Be(0);
        schedule.SparsityAt(3).Should().Be(0.7);
        schedule.SparsityAt(99).Should().Be(0.7);
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(-0.01)]
    [InlineData(double.PositiveInfinity)]
    public void SparsityOutsideZeroToOne_IsRejected(double sparsity)
    {
        ((Action)(() => _ = new OneShotSchedule(sparsity))).Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("sparsity");
        ((Action)(() => _ = new ConstantSparsitySchedule(sparsity))).Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("sparsity");
    }

    [Fact]
    public void Constant_RejectsZeroFrequencyAndAnEndBeforeTheBeginning()
    {
        ((Action)(() => _ = new ConstantSparsitySchedule(0.5, 0, 0))).Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("frequency");
        ((Action)(() => _ = new ConstantSparsitySchedule(0.5, 10, 1, 5))).Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("endStep");
    }
}
