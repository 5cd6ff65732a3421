using Pruning.Grouping;
using Pruning.Scheduling;
using Pruning.Selection;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Grouping;

[Collection(TorchCollection.Name)]
public sealed class PruningGranularityTests
{
    /// <summary>Selects through the engine; returns pruned flags (1 = pruned).</summary>
    private static byte[] Select(PruningGranularity granularity, float[] scores, long[] shape, double sparsity, bool[]? previousKeep = null)
    {
        var selected = MaskSelector.Select([new SelectionLayer("w", scores, shape) { Sparsity = sparsity, PreviousKeep = previousKeep }], granularity);
        return selected[0].Keep.Select(k => k ? (byte)0 : (byte)1).ToArray();
    }

    // 4 rows of 3: row L1 norms 6, 0.6, 15, 3; L2² 14, 0.14, 77, 9; L∞ 3, 0.3, 6, 3.
    private static readonly float[] Rows = [1, 2, 3, 0.1f, 0.2f, 0.3f, 4, 5, 6, 3, 0, 0];

    [Fact]
    public void OutputChannels_L1_PrunesTheRowsWithTheSmallestSums() =>
        Select(PruningGranularity.OutputChannels(LpNorm.L1), Rows, [4, 3], 0.5).Should().Equal(0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1);

    [Fact]
    public void OutputChannels_LInfinity_TiesGoToTheLowerRow()
    {
        // L∞: 3, 0.3, 6, 3 → prune row 1, then row 0 (ties with row 3, lower index first).
        Select(PruningGranularity.OutputChannels(LpNorm.LInfinity), Rows, [4, 3], 0.5).Should().Equal(1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0);
    }

    [Fact]
    public void OutputChannels_L2_DiffersFromL1()
    {
        // [2, 2] has L1 4 and L2 2.83; [3.5, 0] has L1 3.5 and L2 3.5: the two norms disagree on which row is smaller.
        float[] scores = [2, 2, 3.5f, 0];
        Select(PruningGranularity.OutputChannels(LpNorm.L1), scores, [2, 2], 0.5).Should().Equal(0, 0, 1, 1);
        Select(PruningGranularity.OutputChannels(LpNorm.L2), scores, [2, 2], 0.5).Should().Equal(1, 1, 0, 0);
    }

    [Fact]
    public void AnAllZeroGroup_GoesFirst_AndOneGroupAlwaysSurvives()
    {
        float[] scores = [0, 0, 5, 5, 1, 1];
        Select(PruningGranularity.OutputChannels(), scores, [3, 2], 0.34).Should().Equal(1, 1, 0, 0, 0, 0);
        Select(PruningGranularity.OutputChannels(), scores, [3, 2], 0.9999).Should().Equal(1, 1, 0, 0, 1, 1);
    }

    [Fact]
    public void Kernels_GroupEachInOutPairOfAConv()
    {
        // [out 2, in 2, 1, 2]: kernels (0,0)=[1,1] (0,1)=[9,9] (1,0)=[0,2] (1,1)=[5,0].
        float[] scores = [1, 1, 9, 9, 0, 2, 5, 0];
        Select(PruningGranularity.Kernels(), scores, [2, 2, 1, 2], 0.5).Should().Equal(1, 1, 0, 0, 1, 1, 0, 0);
    }

    [Fact]
    public void Kernels_OnALinearWeight_IsRejectedNamingIt()
    {
        var act = () => PruningGranularity.Kernels().Validate("fc1.weight", [4, 3]);
        act.Should().Throw<ArgumentException>().WithMessage("*'fc1.weight'*[4, 3]*");
    }

    [Fact]
    public void Blocks_TileTheTwoDimensionalView()
    {
        // 4x4 in 2x2 blocks; block sums: top-left 4, top-right 40, bottom-left 0.4, bottom-right 400.
        float[] scores =
        [
            1, 1, 10, 10,
            1, 1, 10, 10,
            0.1f, 0.1f, 100, 100,
            0.1f, 0.1f, 100, 100,
        ];
        Select(PruningGranularity.Blocks(2, 2), scores, [4, 4], 0.5).Should().Equal(
            1, 1, 0, 0,
            1, 1, 0, 0,
            1, 1, 0, 0,
            1, 1, 0, 0);
    }

    [Fact]
    public void Blocks_ThatDoNotTile_AreRejectedNamingTheParameter()
    {
        var act = () => PruningGranularity.Blocks(1, 4).Validate("fc2.weight", [10, 6]);
        act.Should().Throw<ArgumentException>().WithMessage("*1x4 blocks do not tile 'fc2.weight'*10x6*");
    }

    [Fact]
    public void TwoOfFour_KeepsTheTwoLargestOfEveryFour()
    {
        float[] scores = [4, 1, 3, 2, /**/ 0, 0, 7, 0, /**/ 5, 5, 5, 5];
        Select(PruningGranularity.NOfM(2, 4), scores, [1, 12], 0.5).Should().Equal(0, 1, 0, 1, /**/ 1, 1, 0, 0, /**/ 1, 1, 0, 0);
    }

    [Fact]
    public void NOfM_RampsWithTheScheduleAndCapsAtMMinusN()
    {
        float[] scores = [4, 1, 3, 2, 8, 6, 7, 5];
        Select(PruningGranularity.NOfM(1, 4), scores, [2, 4], 0.25).Should().Equal(0, 1, 0, 0, 0, 0, 0, 1);
        Select(PruningGranularity.NOfM(2, 4), scores, [2, 4], 0.9).Should().Equal(0, 1, 0, 1, 0, 1, 0, 1);
    }

    [Fact]
    public void NOfM_WhenTheRowIsNotAMultipleOfM_IsAClearError()
    {
        var act = () => PruningGranularity.NOfM(2, 4).Validate("fc3.weight", [10, 6]);
        act.Should().Throw<ArgumentException>().WithMessage("*2:4*multiple of 4*'fc3.weight'*rows of 6*");
    }

    [Theory]
    [InlineData(0, 4)]
    [InlineData(4, 4)]
    [InlineData(1, 1)]
    public void NOfM_RejectsImpossibleRatios(int n, int m)
    {
        var act = () => PruningGranularity.NOfM(n, m);
        act.Should().Throw<ArgumentOutOfRangeException>();
    }

    [Fact]
    public void ThePruner_PrunesWholeOutputChannelsGradually()
    {
        torch.manual_seed(3);
        var model = nn.Sequential(("conv", nn.Conv2d(3, 16, 3)), ("flat", nn.Flatten()), ("fc", nn.Linear(16 * 6 * 6, 10)));
        using var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new PolynomialDecaySchedule(0, 0.75, 0, 4, 2),
            Granularity = PruningGranularity.OutputChannels(),
            Targets = Pruning.Targets.PruningTargets.Default.Include("conv.weight"),
        });
        for (int step = 0; step <= 4; step++) pruner.Step();

        float[] w = TestModels.Values(model.get_parameter("conv.weight")!);
        var zeroFilters = Enumerable.Range(0, 16).Count(f => w.Skip(f * 27).Take(27).All(v => v == 0));
        var liveFilters = Enumerable.Range(0, 16).Count(f => w.Skip(f * 27).Take(27).All(v => v != 0));
        zeroFilters.Should().Be(12, "75 % of 16 filters");
        liveFilters.Should().Be(4, "the other filters are untouched");
        pruner.Report().Layers.Single().Sparsity.Should().Be(0.75);
    }

    [Fact]
    public void ThePruner_Reaches2Of4OnEveryRun()
    {
        torch.manual_seed(4);
        var model = nn.Sequential(("fc", nn.Linear(16, 8)));
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5), Granularity = PruningGranularity.NOfM(2, 4) });
        pruner.Step();
        float[] w = TestModels.Values(model.get_parameter("fc.weight")!);
        Enumerable.Range(0, w.Length / 4).Should().OnlyContain(run => w.Skip(run * 4).Take(4).Count(v => v == 0) == 2);
    }

    [Fact]
    public void ThePruner_RejectsBadGranularityChoicesUpFront()
    {
        var model = TestModels.Mlp(5);
        var tooSparse = () => new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.9), Granularity = PruningGranularity.NOfM(2, 4) });
        tooSparse.Should().Throw<ArgumentException>().WithMessage("*NOfM(n=2, m=4) prunes at most 50.0*'fc1.weight' ends at 90.0*");

        var global = () => new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5), Scope = PruningScope.Global, Granularity = PruningGranularity.NOfM(2, 4) });
        global.Should().Throw<ArgumentException>().WithMessage("*NOfM(n=2, m=4)*cannot share a global ranking*");

        var untiled = () => new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5), Granularity = PruningGranularity.Blocks(4, 4) });
        untiled.Should().Throw<ArgumentException>().WithMessage("*'fc3.weight'*");
    }
}
