using Pruning.Configuration;
using Pruning.Grouping;
using Pruning.Selection;

namespace Pruning.Tests.Selection;

public sealed class MaskSelectorTests
{
    private static bool[] All(int n, bool value) => Enumerable.Repeat(value, n).ToArray();

    private static MaskSelection One(float[] scores, long[] shape, double sparsity, PruningGranularity granularity, bool[]? previousKeep = null) =>
        MaskSelector.Select([new SelectionLayer("w", scores, shape) { Sparsity = sparsity, PreviousKeep = previousKeep }], granularity)[0];

    [Fact]
    public void Group_scores_given_directly_rank_the_groups_as_they_are_and_keep_the_tie_rule()
    {
        // Three rows of two: the element scores would rank row 0 last, the group scores rank row 1 last.
        var layer = new SelectionLayer("w", ReadOnlyMemory<float>.Empty, [3, 2]) { Sparsity = 1 / 3.0, GroupScores = new float[] { 5, 1, 3 } };
        MaskSelector.Select([layer], PruningGranularity.OutputChannels())[0].Keep.Should().Equal(true, true, false, false, true, true);
        // Equal group scores: the row already pruned goes first, not the lower index.
        var tie = layer with { GroupScores = new float[] { 2, 2, 2 }, PreviousKeep = new bool[] { true, true, true, true, false, false } };
        MaskSelector.Select([tie], PruningGranularity.OutputChannels())[0].Keep.Should().Equal(true, true, true, true, false, false);
        FluentActions.Invoking(() => MaskSelector.Select([layer with { GroupScores = new float[] { 1, 2 } }], PruningGranularity.OutputChannels()))
            .Should().Throw<ArgumentException>().WithMessage("*'w' has 2 group scores*3 groups*");
        FluentActions.Invoking(() => MaskSelector.Select([layer with { GroupScores = new float[] { 1, float.NaN, 2 } }], PruningGranularity.OutputChannels()))
            .Should().Throw<ArgumentException>().WithMessage("*group scores of 'w'*NaN*");
    }

    [Fact]
    public void Ties_between_groups_prune_the_group_that_is_already_pruned_first()
    {
        // Four rows with equal L1 norms; row 3 is already pruned. A naive "lower index first" rule would revive row 3
        // and prune row 0 instead.
        float[] scores = [1, 1, 1, 1, 1, 1, 1, 1];
        bool[] previous = [true, true, true, true, true, true, false, false];
        var selected = One(scores, [4, 2], 0.25, PruningGranularity.OutputChannels(), previous);
        selected.Keep.Should().Equal(true, true, true, true, true, true, false, false);
        selected.PrunedCount.Should().Be(2);
    }

    [Fact]
    public void Ties_within_an_N_of_M_run_prune_what_is_already_pruned_first()
    {
        // Every run of 4 is a tie; the previous mask pruned positions 2 and 3 of the first run and 0 and 1 of the second.
        float[] scores = [5, 5, 5, 5, 2, 2, 2, 2];
        bool[] previous = [true, true, false, false, false, false, true, true];
        One(scores, [1, 8], 0.5, PruningGranularity.NOfM(2, 4), previous).Keep.Should().Equal(previous);
        One(scores, [1, 8], 0.5, PruningGranularity.NOfM(2, 4)).Keep.Should().Equal(false, false, true, true, false, false, true, true);
    }

    [Fact]
    public void Ties_between_groups_of_different_tensors_under_global_scope_prune_the_already_pruned_group_first()
    {
        SelectionLayer a = new("a", new float[] { 1, 1, 1, 1 }, [2, 2]) { Sparsity = 0.25, PreviousKeep = new[] { true, true, true, true } };
        SelectionLayer b = new("b", new float[] { 1, 1, 1, 1 }, [2, 2]) { Sparsity = 0.25, PreviousKeep = new[] { true, true, false, false } };
        var selected = MaskSelector.Select([a, b], PruningGranularity.OutputChannels(), PruningScope.Global);
        selected[0].Keep.Should().AllBeEquivalentTo(true);
        selected[1].Keep.Should().Equal(true, true, false, false);
    }

    [Fact]
    public void Layer_wise_targets_are_clamped_into_their_bounds_and_reported()
    {
        var selected = MaskSelector.Select([new SelectionLayer("w", Enumerable.Range(0, 10).Select(i => (float)i).ToArray(), [10]) { Sparsity = 0.9, Bounds = new SparsityRange(0, 0.4) }],
            PruningGranularity.Element);
        selected[0].Target.Should().Be(0.4);
        selected[0].Keep.Should().Equal(false, false, false, false, true, true, true, true, true, true);
    }

    [Fact]
    public void A_granularity_of_your_own_plugs_into_the_engine()
    {
        // Columns of a Linear weight (input features), as structured pruning of a layer's inputs would want.
        float[] scores =
        [
            1, 9, 0.1f, 5,
            1, 9, 0.1f, 5,
        ];
        var selected = One(scores, [2, 4], 0.5, new Columns());
        selected.Keep.Should().Equal(false, true, false, true, false, true, false, true);
        new Columns().Config.Should().Be(new ComponentConfig("Columns", ("norm", LpNorm.L1)));
    }

    private sealed class Columns() : PruningGranularity(LpNorm.L1)
    {
        public override ComponentConfig Config => new("Columns", ("norm", Norm));

        public override long GroupCount(long[] shape) => shape[1];

        public override void MapGroups(long[] shape, Span<int> groupOfElement)
        {
            for (int i = 0; i < groupOfElement.Length; i++) groupOfElement[i] = (int)(i % shape[1]);
        }
    }

    [Fact]
    public void A_granularity_that_maps_outside_its_groups_is_refused_naming_it()
    {
        var act = () => One([1, 2, 3, 4], [2, 2], 0.5, new Broken());
        act.Should().Throw<ArgumentException>().WithMessage("*maps element 0 of 'w' to group 7*").Which.ParamName.Should().Be("layers");
    }

    private sealed class Broken() : PruningGranularity
    {
        public override ComponentConfig Config => new("Broken");
        public override long GroupCount(long[] shape) => 2;
        public override void MapGroups(long[] shape, Span<int> groupOfElement) => groupOfElement.Fill(7);
    }

    [Fact]
    public void Bad_input_is_refused_naming_the_layer()
    {
        FluentActions.Invoking(() => One([1, 2, 3], [2, 2], 0.5, PruningGranularity.Element))
            .Should().Throw<ArgumentException>().WithMessage("*'w'*[2, 2]*3 scores*");
        FluentActions.Invoking(() => One([1, float.NaN, 3, 4], [2, 2], 0.5, PruningGranularity.Element))
            .Should().Throw<ArgumentException>().WithMessage("*'w'*NaN*");
        FluentActions.Invoking(() => One([1, 2, 3, 4], [2, 2], 1.0, PruningGranularity.Element))
            .Should().Throw<ArgumentException>().WithMessage("*'w'*[0, 1)*");
        FluentActions.Invoking(() => One([1, 2, 3, 4], [2, 2], 0.5, PruningGranularity.Element, [true]))
            .Should().Throw<ArgumentException>().WithMessage("*'w'*1 flags*4 elements*");
        FluentActions.Invoking(() => One([1, 2, 3, 4, 5, 6], [2, 3], 0.5, PruningGranularity.NOfM(2, 4)))
            .Should().Throw<ArgumentException>().WithMessage("*multiple of 4*'w'*");
        SelectionLayer a = new("a", new float[] { 1, 2 }, [2]) { Sparsity = 0.5 }, b = new("b", new float[] { 1, 2 }, [2]) { Sparsity = 0.3 };
        FluentActions.Invoking(() => MaskSelector.Select([a, b], PruningGranularity.Element, PruningScope.Global))
            .Should().Throw<ArgumentException>().WithMessage("*one model-wide target*'a' 0.5*'b' 0.3*");
        FluentActions.Invoking(() => MaskSelector.Select([a with { Sparsity = 0.3 }, b], PruningGranularity.NOfM(1, 2), PruningScope.Global))
            .Should().Throw<ArgumentException>().WithMessage("*cannot share a global ranking*").Which.ParamName.Should().Be("scope");
    }

    [Theory]
    [InlineData(1, 0.5)]
    [InlineData(7, 0.9)]
    [InlineData(257, 0.3)]
    public void Every_granularity_prunes_exactly_the_rounded_count_of_groups(int rows, double sparsity)
    {
        var random = new Random(rows);
        float[] scores = Enumerable.Range(0, rows * 8).Select(_ => (float)random.NextDouble()).ToArray();
        long[] shape = [rows, 8];
        long Pruned(PruningGranularity g) => One(scores, shape, sparsity, g).PrunedCount;
        Pruned(PruningGranularity.Element).Should().Be(Math.Min(MaskSelector.PrunedCount(sparsity, rows * 8), rows * 8 - 1));
        Pruned(PruningGranularity.OutputChannels()).Should().Be(8 * Math.Min(MaskSelector.PrunedCount(sparsity, rows), rows - 1));
        Pruned(PruningGranularity.Blocks(1, 4)).Should().Be(4 * Math.Min(MaskSelector.PrunedCount(sparsity, rows * 2), rows * 2 - 1));
        Pruned(PruningGranularity.NOfM(1, 4)).Should().Be(rows * 2 * Math.Min(MaskSelector.PrunedCount(sparsity, 4), 3));
    }
}
