using Pruning.Analysis;
using Pruning.Criteria;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Tests.Analysis;

[Collection("torch")]
public class SensitivityScanTests
{
    private static Dictionary<string, float[]> Weights(nn.Module model) =>
        model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().data<float>().ToArray());

    [Fact]
    public void Each_probe_prunes_only_its_layer_to_its_ratio_and_the_weights_come_back_bit_for_bit()
    {
        var model = TestModels.Mlp(seed: 7);
        var original = Weights(model);
        var (x, y) = TestModels.Batch(3);
        var probes = new List<(string Layer, double Sparsity)>();
        var result = SensitivityScan.Run(model, m =>
        {
            var now = Weights(m);
            var changed = now.Where(kv => !kv.Value.SequenceEqual(original[kv.Key])).Select(kv => kv.Key).ToArray();
            changed.Length.Should().BeLessThanOrEqualTo(1, "only the probed layer may differ");
            if (changed.Length == 1) probes.Add((changed[0], now[changed[0]].Count(v => v == 0) / (double)now[changed[0]].Length));
            using var _ = torch.no_grad();
            return -nn.functional.cross_entropy(((nn.Module<Tensor, Tensor>)m).call(x), y).item<float>();
        }, new SensitivityOptions { Ratios = [0.2, 0.5, 0.8], Direction = MetricDirection.HigherIsBetter });

        probes.Select(p => p.Layer).Should().Equal("fc1.weight", "fc1.weight", "fc1.weight", "fc2.weight", "fc2.weight", "fc2.weight", "fc3.weight", "fc3.weight", "fc3.weight");
        probes.Select(p => Math.Round(p.Sparsity, 1)).Should().Equal(0.2, 0.5, 0.8, 0.2, 0.5, 0.8, 0.2, 0.5, 0.8);
        var after = Weights(model);
        foreach (var (name, values) in original) after[name].Should().Equal(values, name);
        result.Layers.Select(l => l.Size).Should().Equal(16 * 32, 32 * 24, 24 * 3);
        result.ToCsv().Split('\n')[0].Should().Be("layer,size,ratio,metric,drop");
    }

    [Fact]
    public void A_failing_callback_is_named_and_the_weights_are_restored()
    {
        var model = TestModels.Mlp(seed: 8);
        var original = Weights(model);
        int calls = 0;
        Action run = () => SensitivityScan.Run(model, _ => ++calls == 5 ? throw new InvalidOperationException("boom") : 1.0,
            new SensitivityOptions { Ratios = [0.3, 0.6] });
        run.Should().Throw<SensitivityScanException>().WithMessage("*'fc2.weight' pruned to 0.6*boom*");   // calls: baseline, fc1 ×2, fc2 at 0.3, fc2 at 0.6
        var after = Weights(model);
        foreach (var (name, values) in original) after[name].Should().Equal(values, name);
        FluentActions.Invoking(() => SensitivityScan.Run(model, _ => double.NaN)).Should().Throw<SensitivityScanException>().WithMessage("*must be finite*");
    }

    [Fact]
    public void Bad_options_are_refused()
    {
        var model = TestModels.Mlp(seed: 9);
        FluentActions.Invoking(() => SensitivityScan.Run(model, _ => 1, new SensitivityOptions { Ratios = [] })).Should().Throw<ArgumentException>().WithMessage("*ratio list is empty*");
        FluentActions.Invoking(() => SensitivityScan.Run(model, _ => 1, new SensitivityOptions { Ratios = [0.5, 1.0] })).Should().Throw<ArgumentException>().WithMessage("*Ratio 1 is outside [0, 1)*");
        FluentActions.Invoking(() => SensitivityScan.Run(model, _ => 1, new SensitivityOptions { Ratios = [-0.1] })).Should().Throw<ArgumentException>();
        FluentActions.Invoking(() => SensitivityScan.Run(model, _ => 1, new SensitivityOptions { Criterion = new FisherCriterion() })).Should().Throw<ArgumentException>().WithMessage("*gradients*");
        FluentActions.Invoking(() => SensitivityScan.Run(model, _ => 1, new SensitivityOptions { Criterion = new MagnitudeCriterion(), Policy = new Pruning.Reconstruction.WandaPolicy() }))
            .Should().Throw<ArgumentException>().WithMessage("*both a Criterion*and a Policy (Wanda*");
    }

    /// <summary>Two layers: "a" (100 weights) tolerant, "b" (300 weights) sensitive. Accuracy baseline 0.9.</summary>
    private static SensitivityResult Synthetic() => new(0.9, MetricDirection.HigherIsBetter,
    [
        new LayerSensitivity("a", 100, [(0.2, 0.9), (0.4, 0.89), (0.6, 0.88), (0.8, 0.85)]),
        new LayerSensitivity("b", 300, [(0.2, 0.89), (0.4, 0.85), (0.6, 0.7), (0.8, 0.5)]),
    ]);

    [Fact]
    public void A_drop_threshold_gives_each_layer_the_largest_sparsity_within_it()
    {
        var s = Synthetic().SparsitiesForMaxDrop(0.02);
        // a: drops 0, .01, .02, .05 → reaches 0.6 exactly, then interpolates toward 0.8: 0.6 + 0.2·(0.02−0.02)/(0.05−0.02) = 0.6.
        s["a"].Should().BeApproximately(0.6, 1e-9);
        // b: drops .01, .05 → 0.2 + 0.2·(0.02−0.01)/(0.05−0.01) = 0.25.
        s["b"].Should().BeApproximately(0.25, 1e-9);
        var strict = Synthetic().SparsitiesForMaxDrop(0);
        strict["a"].Should().BeApproximately(0.2, 1e-9);
        strict["b"].Should().BeApproximately(0, 1e-9, "b loses accuracy at its first probe");
    }

    [Fact]
    public void A_total_budget_is_met_exactly_and_the_sensitive_layer_is_pruned_less()
    {
        var s = Synthetic().SparsitiesForTotal(0.5);
        ((s["a"] * 100 + s["b"] * 300) / 400).Should().BeApproximately(0.5, 1e-9);
        s["a"].Should().BeGreaterThan(s["b"]);
        s["a"].Should().BeLessThanOrEqualTo(0.8);
        Synthetic().SparsitiesForNonZeros(200).Values.Should().Equal(s.Values, (p, q) => Math.Abs(p - q) < 1e-9);
        FluentActions.Invoking(() => Synthetic().SparsitiesForTotal(0.85)).Should().Throw<BudgetNotMetException>().WithMessage("*cannot be met*80.00 %*");
    }

    [Theory]
    [InlineData(0.3)]
    [InlineData(0.437)]
    [InlineData(0.71)]
    public void A_total_budget_is_exact_in_whole_weights_once_the_pruner_rounds_each_layer(double total)
    {
        // Layers of 101 and 303 weights: s·n is rarely whole, and rounding each layer on its own would miss the total.
        var result = new SensitivityResult(0.9, MetricDirection.HigherIsBetter,
        [
            new LayerSensitivity("a", 101, [(0.2, 0.9), (0.4, 0.89), (0.6, 0.88), (0.8, 0.85)]),
            new LayerSensitivity("b", 303, [(0.2, 0.89), (0.4, 0.85), (0.6, 0.7), (0.8, 0.5)]),
        ]);
        var s = result.SparsitiesForTotal(total);
        long pruned = Pruning.Selection.MaskSelector.PrunedCount(s["a"], 101) + Pruning.Selection.MaskSelector.PrunedCount(s["b"], 303);
        pruned.Should().Be(Pruning.Selection.MaskSelector.PrunedCount(total, 404));
    }
}
