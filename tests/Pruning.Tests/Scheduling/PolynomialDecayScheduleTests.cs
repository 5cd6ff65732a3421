using Pruning.Scheduling;

namespace Pruning.Tests.Scheduling;

public sealed class PolynomialDecayScheduleTests
{
    private static readonly PolynomialDecaySchedule Golden = new(0.2, 0.8, beginStep: 100, endStep: 110, frequency: 2, power: 3);

    [Theory]
    [InlineData(100, 0.2)]
    [InlineData(102, 0.4928)]
    [InlineData(105, 0.725)]
    [InlineData(110, 0.8)]
    [InlineData(99, 0.0)]
    [InlineData(0, 0.0)]
    [InlineData(111, 0.8)]
    [InlineData(1_000_000, 0.8)]
    public void SparsityAt_MatchesThePapersFormula(long step, double expected) =>
        Golden.SparsityAt(step).Should().BeApproximately(expected, 1e-12);

    [Fact]
    public void UpdateSteps_AreEveryFrequencyStepsFromBeginThroughEnd() =>
        Golden.UpdateSteps().Select(u => u.Step).Should().Equal(100, 102, 104, 106, 108, 110);

    [Theory]
    [InlineData(99, false)]
    [InlineData(100, true)]
    [InlineData(101, false)]
    [InlineData(110, true)]
    [InlineData(112, false)]
    public void IsUpdateStep_HonoursTheWindowAndTheFrequency(long step, bool expected) =>
        Golden.IsUpdateStep(step).Should().Be(expected);

    [Fact]
    public void EndStep_IsAlwaysAnUpdate_EvenOffTheFrequencyGrid()
    {
        var schedule = new PolynomialDecaySchedule(0, 0.9, beginStep: 0, endStep: 10, frequency: 3);
        schedule.UpdateSteps().Should().Equal((0L, 0.0), (3L, schedule.SparsityAt(3)), (6L, schedule.SparsityAt(6)), (9L, schedule.SparsityAt(9)), (10L, 0.9));
    }

    [Fact]
    public void FromUpdates_PlacesNPlusOneUpdatesDeltaTApart()
    {
        var schedule = PolynomialDecaySchedule.FromUpdates(0.0, 0.5, beginStep: 20, frequency: 10, updates: 4);
        schedule.EndStep.Should().Be(60);
        schedule.UpdateSteps().Select(u => u.Step).Should().Equal(20, 30, 40, 50, 60);
        schedule.SparsityAt(30).Should().BeApproximately(0.5 - 0.5 * Math.Pow(0.75, 3), 1e-12);
    }

    [Fact]
    public void Sparsity_NeverDecreases_AndIsReachedExactly()
    {
        var schedule = new PolynomialDecaySchedule(0.1, 0.95, 7, 1007, 13, 3);
        var values = Enumerable.Range(0, 1100).Select(t => schedule.SparsityAt(t)).ToArray();
        values.Zip(values.Skip(1)).Should().OnlyContain(p => p.Second >= p.First);
        schedule.SparsityAt(1007).Should().Be(0.95);
    }

    [Fact]
    public void Power_ChangesTheShape_NotTheEndpoints()
    {
        var linear = new PolynomialDecaySchedule(0, 0.8, 0, 100, 10, power: 1);
        linear.SparsityAt(50).Should().BeApproximately(0.4, 1e-12);
        linear.SparsityAt(0).Should().Be(0);
        linear.SparsityAt(100).Should().Be(0.8);
    }

    [Theory]
    [InlineData(-0.1, 0.5, 0, 10, 1, 3, "initialSparsity")]
    [InlineData(0.0, 1.0, 0, 10, 1, 3, "finalSparsity")]
    [InlineData(0.0, double.NaN, 0, 10, 1, 3, "finalSparsity")]
    [InlineData(0.6, 0.5, 0, 10, 1, 3, "finalSparsity")]
    [InlineData(0.0, 0.5, -1, 10, 1, 3, "beginStep")]
    [InlineData(0.0, 0.5, 10, 10, 1, 3, "endStep")]
    [InlineData(0.0, 0.5, 0, 10, 0, 3, "frequency")]
    [InlineData(0.0, 0.5, 0, 10, -5, 3, "frequency")]
    [InlineData(0.0, 0.5, 0, 10, 1, 0, "power")]
    public void BadArguments_AreRejectedByName(double si, double sf, long begin, long end, long frequency, double power, string name)
    {
        var act = () => new PolynomialDecaySchedule(si, sf, begin, end, frequency, power);
        act.Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be(name);
    }

    [Theory]
    [InlineData(0, 10, "frequency")]
    [InlineData(10, 0, "updates")]
    [InlineData(10, -1, "updates")]
    public void FromUpdates_RejectsNonPositiveDeltaTAndN(long frequency, int updates, string name)
    {
        var act = () => PolynomialDecaySchedule.FromUpdates(0, 0.5, 0, frequency, updates);
        act.Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be(name);
    }

    [Fact]
    public void ToString_NamesEveryParameter() =>
        Golden.ToString().Should().Be("PolynomialDecay(initial=0.2, final=0.8, begin=100, end=110, frequency=2, power=3)");
}
