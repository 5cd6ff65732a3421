using Pruning.Analysis;
using Pruning.Structure;
using TorchSharp;
using Pruning.Sparse.Timing;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Analysis;

[Collection("torch")]
public class ChannelNetAdaptTests
{
    [Fact]
    public void The_table_times_layers_with_torchsharp_on_first_use_and_caches_them()
    {
        torch.manual_seed(1);
        var model = nn.Sequential(("conv1", nn.Conv2d(1, 8, 3, padding: 1)), ("relu", nn.ReLU()), ("flat", nn.Flatten()), ("fc", nn.Linear(8 * 6 * 6, 4)));
        long reads = 0;
        var clock = new CountingClock(() => reads++);
        using var example = torch.randn(2, 1, 6, 6);
        var table = LatencyTable.MeasureDense(ChannelGraph.Trace(model, example), batch: 2, runs: 5, clock: clock);
        table.Layers.Should().Equal(new LatencyLayer("conv1.weight", 1, 8), new LatencyLayer("fc.weight", 8, 4));
        reads.Should().Be(0, "nothing is timed before it is asked for");
        double conv = table.Milliseconds(new LayerVariant("conv1.weight", 1, 4, 0));
        reads.Should().Be(10, "5 runs, a start and a stop each");
        conv.Should().Be(0.001, "the counting clock advances 1 µs per read");
        table.Milliseconds(new LayerVariant("conv1.weight", 1, 4, 0)).Should().Be(conv);
        reads.Should().Be(10, "the entry is cached");
        // A Linear behind a Flatten is timed with in-channels × H·W inputs: 3 channels → 108 features. It must not throw.
        table.Milliseconds(new LayerVariant("fc.weight", 3, 4, 0)).Should().BeGreaterThan(0);
        table.Measured.Keys.Should().Contain(new LayerVariant("fc.weight", 3, 4, 0));
        FluentActions.Invoking(() => table.Milliseconds(new LayerVariant("fc.weight", 9, 4, 0))).Should().Throw<ArgumentException>().WithMessage("*'fc.weight'*8→4*9→4*");
        FluentActions.Invoking(() => table.Milliseconds(new LayerVariant("fc2.weight", 1, 1, 0))).Should().Throw<ArgumentException>().WithMessage("*'fc2.weight'*not in the latency table*");
    }

    /// <summary>Latency ∝ in × out channels, for TestModels.Mlp (fc1 16→32, fc2 32→24, fc3 24→3).</summary>
    private static LatencyTable ProductTable() =>
        new([new("fc1.weight", 16, 32), new("fc2.weight", 32, 24), new("fc3.weight", 24, 3)], 1, measure: v => v.InChannels * v.OutChannels);

    private static ChannelGraph Graph(nn.Module<Tensor, Tensor> model)
    {
        using var example = torch.randn(2, 16);
        return ChannelGraph.Trace(model, example);
    }

    [Fact]
    public void A_table_that_does_not_list_the_models_layers_is_refused_naming_both()
    {
        var model = TestModels.Mlp(seed: 5);
        var table = new LatencyTable([new("fc1.weight", 16, 32), new("fc2.weight", 32, 24)], 1, measure: v => 1);
        FluentActions.Invoking(() => ChannelNetAdapt.Run(model, Graph(model), table, _ => 0)).Should().Throw<ArgumentException>()
            .WithMessage("*lists [fc1.weight, fc2.weight]*[fc1.weight, fc2.weight, fc3.weight]*");
    }

    private sealed class CountingClock(Action onRead) : ILatencyClock
    {
        private long _now;
        public long Timestamp() { onRead(); return ++_now; }
        public double TicksPerMillisecond => 1000;
    }

    [Fact]
    public void Each_iteration_cuts_the_fewest_channels_that_meet_the_step_and_the_result_shrinks_exactly()
    {
        var model = TestModels.Mlp(seed: 3);   // fc1 16→32, fc2 32→24, fc3 24→3
        var graph = Graph(model);
        // Latency ∝ in × out: dense 16·32 + 32·24 + 24·3 = 1352; budget 70 % = 946.4; ΔR = 135.2.
        var table = ProductTable();
        var tried = new List<(string Layer, double Sparsity)>();
        var result = ChannelNetAdapt.Run(model, graph, table, p =>
        {
            tried.Add((p.Layer, p.Sparsity));
            return p.Layer == "fc2.weight" ? 1.0 : 0.5;
        }, new NetAdaptOptions { TargetCostFraction = 0.7, ReductionPerIteration = 0.1 });

        // Iteration 1 (goal 1216.8): fc1 to 28 channels gives 1192; fc2 to 21 gives 1247, to 18 gives 1142. fc2 is kept.
        tried.Take(2).Select(t => t.Layer).Should().Equal("fc1.weight", "fc2.weight");
        result.Iterations[0].Should().Be(new NetAdaptIteration(1, "fc2.weight", 0.25, 18, new Cost(1142, CostUnit.Milliseconds), 1.0, 2));
        // Iteration 2 (goal 1006.8): fc2 to 12 gives 932, under the budget.
        result.Iterations.Should().HaveCount(2);
        result.Iterations[1].Channels.Should().Be(12);
        result.BudgetMet.Should().BeTrue();
        result.Channels.Should().BeEquivalentTo(new Dictionary<string, long> { ["fc1.weight"] = 32, ["fc2.weight"] = 12 });
        result.Sparsities.Should().BeEquivalentTo(new Dictionary<string, double> { ["fc1.weight"] = 0, ["fc2.weight"] = 0.5 });

        // The model holds the cut: 12 of fc2's 24 rows (and biases) are zero, and shrinking removes them without changing outputs.
        var w = model.get_parameter("fc2.weight")!.detach();
        w.reshape(24, -1).ne(0).any(1).sum().item<long>().Should().Be(12);
        var (x, _) = TestModels.Batch(4);
        using var __ = torch.no_grad();
        using Tensor before = model.call(x);
        graph.ShrinkInPlace();
        model.get_parameter("fc2.weight")!.shape.Should().Equal(12, 32);
        model.call(x).allclose(before, rtol: 1e-5, atol: 1e-6).Should().BeTrue();
    }

    [Fact]
    public void Remask_keeps_removed_channels_at_zero_during_fine_tuning()
    {
        var model = TestModels.Mlp(seed: 4);
        var table = ProductTable();
        ChannelNetAdapt.Run(model, Graph(model), table, p =>
        {
            using (torch.no_grad()) foreach (var q in p.Model.parameters()) q.add_(0.01f);
            p.Remask();
            var rows = p.Model.get_parameter(p.Layer)!.detach();
            long alive = rows.reshape(rows.shape[0], -1).ne(0).any(1).sum().item<long>();
            alive.Should().Be((long)Math.Round(rows.shape[0] * (1 - p.Sparsity)));
            return 0;
        }, new NetAdaptOptions { TargetCostFraction = 0.9, ReductionPerIteration = 0.1 });
    }

    [Fact]
    public void A_resnet_of_user_blocks_is_searched_by_dependency_groups_under_a_flops_budget_and_shrinks_to_it()
    {
        var model = Pruning.Tests.Structure.ChannelGraphTests.TinyResNet(12);
        using var x = torch.randn(2, 1, 12, 12);
        var graph = ChannelGraph.Trace(model, x);
        long dense = graph.Macs();
        var result = ChannelNetAdapt.Run(model, graph, p =>
        {
            // Prefer cutting the residual groups (stem + block1, block2's output): the proposals' metric says so.
            return p.Layer is "stem.weight" or "block2.conv2.weight" ? 1.0 : 0.5;
        }, new NetAdaptOptions { TargetCostFraction = 0.6, ReductionPerIteration = 0.1 });

        result.DenseCost.Should().Be(new Cost(dense, CostUnit.Macs));
        result.BudgetMet.Should().BeTrue();
        result.Iterations.Should().OnlyContain(i => i.Layer == "stem.weight" || i.Layer == "block2.conv2.weight");
        result.FinalCost.Value.Should().BeLessThanOrEqualTo(0.6 * dense);
        // Every layer of a cut group is cut alike, and the shrunk model computes the MACs the search counted.
        long Alive(string weight)
        {
            var p = model.get_parameter(weight)!.detach();
            return p.reshape(p.shape[0], -1).ne(0).any(1).sum().item<long>();
        }
        Alive("block2.down.0.weight").Should().Be(Alive("block2.conv2.weight")).And.Be(result.Channels!["block2.conv2.weight"]);
        Alive("block1.conv2.weight").Should().Be(Alive("stem.weight")).And.Be(result.Channels!["stem.weight"]);
        graph.ShrinkInPlace();
        ChannelGraph.Trace(model, x).Macs().Should().Be((long)result.FinalCost.Value);
    }
}
