using Pruning.Analysis;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Timing;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Tests.Analysis;

[Collection("torch")]
public class NetAdaptTests
{
    /// <summary>A clock whose consecutive (start, stop) reads are a scripted list of durations, in ticks of 1 µs.</summary>
    private sealed class ScriptedClock(IEnumerable<long> durations) : ILatencyClock
    {
        private readonly Queue<long> _durations = new(durations);
        private long _now;
        private bool _started;

        public long Timestamp()
        {
            if (_started) _now += _durations.Count > 0 ? _durations.Dequeue() : 1;
            _started = !_started;
            return _now;
        }

        public double TicksPerMillisecond => 1000;
    }

    [Fact]
    public void The_latency_table_keeps_the_median_of_the_clock_readings_per_layer_and_candidate()
    {
        var model = TestModels.Mlp(seed: 1);
        // 3 layers × 2 candidates (0 and 0.5) × 3 runs, in measurement order.
        long[] script = [10, 30, 20, /**/ 5, 7, 6, /**/ 40, 41, 42, /**/ 9, 8, 100, /**/ 3, 2, 1, /**/ 2, 2, 2, /**/ 4, 6, 5];
        var table = LatencyTable.MeasureSparse(model, new FeatureShape(16), [0.5], batch: 1, runs: 3, clock: new ScriptedClock(script));
        table.Layers.Select(l => l.Name).Should().Equal("fc1.weight", "fc2.weight", "fc3.weight");
        table.Layers[1].Should().Be(new LatencyLayer("fc2.weight", 32, 24));
        table.Candidates("fc1.weight").Should().Equal((0.0, 0.020), (0.5, 0.006));
        table.Candidates("fc2.weight").Should().Equal((0.0, 0.041), (0.5, 0.009));
        table.Candidates("fc3.weight").Should().Equal((0.0, 0.002), (0.5, 0.002));
        table.Milliseconds("fc1.weight", 0.25).Should().Be(0.005, "a sparsity not measured yet is measured when asked for");
        table.Measured.Should().HaveCount(7);
        table.Milliseconds(new Dictionary<string, double> { ["fc2.weight"] = 0.5 }).Should().BeApproximately(0.020 + 0.009 + 0.002, 1e-12);
    }

    [Fact]
    public void A_table_measured_elsewhere_interpolates_between_its_sparsities_and_refuses_what_it_cannot_answer()
    {
        LatencyTable table = Table();
        table.Milliseconds("fc1.weight", 0.25).Should().BeApproximately(8.0, 1e-12);
        table.Milliseconds("fc1.weight", 0.95).Should().Be(2.0, "beyond the last measurement the last one holds");
        FluentActions.Invoking(() => table.Milliseconds(new LayerVariant("fc1.weight", 16, 16, 0))).Should().Throw<ArgumentException>().WithMessage("*'fc1.weight'*16→16*");
        FluentActions.Invoking(() => table.Milliseconds("fc4.weight", 0)).Should().Throw<ArgumentException>().WithMessage("*'fc4.weight'*fc1.weight, fc2.weight, fc3.weight*");
        FluentActions.Invoking(() => new LatencyTable([new LatencyLayer("fc1.weight", 16, 32)], 1, [KeyValuePair.Create(new LayerVariant("fc1.weight", 16, 32, 0.5), 1.0)]))
            .Should().Throw<ArgumentException>().WithMessage("*'fc1.weight'*dense*").Which.ParamName.Should().Be("measured");
    }

    [Fact]
    public void Table_probes_have_exactly_the_candidate_sparsity_so_they_get_the_format_export_will_give()
    {
        // A 50 %-pruned stride-1 conv exports as CSR run by direct convolution (≤ 50 % density); a probe with a random
        // number of zeros would land on either side of that line.
        var conv = new Conv2dLayer(new Pruning.Sparse.Matrices.DenseMatrix(new float[16 * 27], 16, 27), null, 3, (3, 3), padding: (1, 1));
        var random = new Random(3);
        for (int i = 0; i < 20; i++)
        {
            var probe = (Conv2dLayer)LatencyTable.WithRandomWeights(conv, 0.5, random);
            probe.Weight.NonZeros.Should().Be(216);
            probe.Algorithm.Should().Be(ConvAlgorithm.Direct);
        }
        var linear = new LinearLayer(new Pruning.Sparse.Matrices.DenseMatrix(new float[10 * 7], 10, 7), null);
        ((LinearLayer)LatencyTable.WithRandomWeights(linear, 0.9, random)).Weight.NonZeros.Should().Be(7);
        ((LinearLayer)LatencyTable.WithRandomWeights(linear, 0.0, random)).Weight.NonZeros.Should().Be(70);
    }

    /// <summary>A table measured elsewhere, for TestModels.Mlp (fc1 16→32, fc2 32→24, fc3 24→3).</summary>
    private static LatencyTable Table()
    {
        LatencyLayer[] layers = [new("fc1.weight", 16, 32), new("fc2.weight", 32, 24), new("fc3.weight", 24, 3)];
        var times = new Dictionary<string, (double, double)[]>
        {
            ["fc1.weight"] = [(0.0, 10.0), (0.5, 6.0), (0.7, 4.0), (0.9, 2.0)],
            ["fc2.weight"] = [(0.0, 5.0), (0.5, 3.0), (0.7, 2.5), (0.9, 2.0)],
            ["fc3.weight"] = [(0.0, 1.0), (0.5, 1.0)],
        };
        return new LatencyTable(layers, batch: 1, layers.SelectMany(l => times[l.Name].Select(t => KeyValuePair.Create(l.At(t.Item1), t.Item2))));
    }

    [Fact]
    public void Each_iteration_proposes_the_smallest_cut_that_meets_the_step_and_keeps_the_best_metric()
    {
        var model = TestModels.Mlp(seed: 4);
        var tried = new List<(string Layer, double Sparsity)>();
        var result = NetAdapt.Run(model, Table(), p =>
        {
            tried.Add((p.Layer, p.Sparsity));
            // Prefer pruning fc1 (metric higher when fc1 is the proposal).
            return p.Layer == "fc1.weight" ? 1.0 : 0.5;
        }, new NetAdaptOptions { TargetCostFraction = 0.5, ReductionPerIteration = 0.2 });

        // Dense 16 ms; budget 8; ΔR 3.2 ms. Iteration 1 goal 12.8: fc1 → 0.5 (10→6), fc2 → 0.9 cuts only 3 (to 13), the most it can.
        tried.Take(2).Should().Equal(("fc1.weight", 0.5), ("fc2.weight", 0.9));
        result.Iterations[0].Should().Be(new NetAdaptIteration(1, "fc1.weight", 0.5, null, new Cost(12.0, CostUnit.Milliseconds), 1.0, 2));
        result.BudgetMet.Should().BeTrue();
        result.FinalCost.Should().Match<Cost>(c => c.Unit == CostUnit.Milliseconds && c.Value <= 8.0);
        result.Sparsities["fc3.weight"].Should().Be(0, "fc3 never cuts latency");
        // The model holds the kept masks: each layer's zeros match its sparsity.
        foreach (var (name, sparsity) in result.Sparsities)
        {
            var w = model.get_parameter(name)!.detach().data<float>().ToArray();
            (w.Count(v => v == 0) / (double)w.Length).Should().BeApproximately(sparsity, 0.01, name);
        }
    }

    [Fact]
    public void Remask_keeps_pruned_weights_at_zero_during_fine_tuning_and_an_unreachable_budget_is_reported()
    {
        var model = TestModels.Mlp(seed: 5);
        var result = NetAdapt.Run(model, Table(), p =>
        {
            using (torch.no_grad()) foreach (var q in p.Model.parameters()) q.add_(0.01f);   // "training" revives everything
            p.Remask();
            var w = p.Model.get_parameter(p.Layer)!.detach().data<float>().ToArray();
            (w.Count(v => v == 0) / (double)w.Length).Should().BeApproximately(p.Sparsity, 0.01);
            return 0;
        }, new NetAdaptOptions { TargetCostFraction = 0.2, ReductionPerIteration = 0.1 });

        // The fastest reachable is 2 + 2 + 1 = 5 ms of 16: above the 3.2 ms budget.
        result.BudgetMet.Should().BeFalse();
        result.FinalCost.Should().Be(new Cost(5.0, CostUnit.Milliseconds));
        result.ToString().Should().Contain("budget NOT met");
    }

    [Fact]
    public void A_table_for_another_model_is_refused()
    {
        var table = new LatencyTable([new LatencyLayer("conv9.weight", 3, 8)], 1, [KeyValuePair.Create(new LayerVariant("conv9.weight", 3, 8, 0), 1.0)]);
        FluentActions.Invoking(() => NetAdapt.Run(TestModels.Mlp(seed: 1), table, _ => 0)).Should().Throw<ArgumentException>().WithMessage("*'conv9.weight'*");
    }
}
