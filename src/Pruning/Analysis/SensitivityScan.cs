using System.Globalization;
using System.Text;
using Pruning.Criteria;
using Pruning.Grouping;
using Pruning.Scheduling;
using Pruning.Targets;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Analysis;

/// <summary>Whether a larger metric is better (accuracy) or worse (loss, perplexity).</summary>
public enum MetricDirection
{
    /// <summary>Accuracy-like: a drop is baseline − value.</summary>
    HigherIsBetter,
    /// <summary>Loss-like: a drop is value − baseline.</summary>
    LowerIsBetter,
}

/// <summary>What a sensitivity scan probes.</summary>
public sealed class SensitivityOptions
{
    /// <summary>The ratios each layer is pruned to, one at a time (default 0.1, 0.2, …, 0.9). Each in [0, 1).</summary>
    public IReadOnlyList<double> Ratios { get; init; } = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

    /// <summary>The layers to probe (default: every prunable weight).</summary>
    public PruningTargets Targets { get; init; } = PruningTargets.Default;

    /// <summary>How elements are scored; must not need gradients (magnitude by default).</summary>
    public IPruningCriterion Criterion { get; init; } = new MagnitudeCriterion();

    /// <summary>What is pruned together (elements by default; channels, blocks, N:M…).</summary>
    public PruningGranularity Granularity { get; init; } = PruningGranularity.Element;

    /// <summary>The metric's direction.</summary>
    public MetricDirection Direction { get; init; } = MetricDirection.HigherIsBetter;
}

/// <summary>
/// Sensitivity analysis (MIT 6.5940 lecture 6; Han et al. 2015): prune one layer at a time to each ratio, evaluate,
/// and restore the weights bit for bit. The curves show which layers tolerate pruning; <see cref="SensitivityResult"/>
/// turns them into per-layer final sparsities for the cubic schedule.
/// </summary>
/// <remarks>
/// Blind spot: each layer is probed with all others dense, so interactions between layers are not seen; pruning
/// two tolerant layers together can hurt more than their curves add up to. Global magnitude ranking
/// (<see cref="Selection.PruningScope.Global"/>) is the alternative that allocates across layers without this
/// assumption (but also without looking at the metric).
/// </remarks>
public static class SensitivityScan
{
    /// <summary>
    /// Runs the scan. <paramref name="evaluate"/> is called once for the baseline and once per layer and ratio, with
    /// the model in its probed state; it must not train the model. The model's parameters are exactly as before when
    /// this returns or throws.
    /// </summary>
    /// <exception cref="ArgumentException">Empty ratio list, a ratio outside [0, 1), or a criterion that needs gradients.</exception>
    /// <exception cref="SensitivityScanException">The callback threw or returned a non-finite value; names the layer and ratio.</exception>
    public static SensitivityResult Run(nn.Module model, Func<nn.Module, double> evaluate, SensitivityOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(evaluate);
        options ??= new SensitivityOptions();
        ArgumentNullException.ThrowIfNull(options.Ratios, nameof(options.Ratios));
        if (options.Ratios.Count == 0) throw new ArgumentException("The ratio list is empty; give at least one ratio in [0, 1).", nameof(options));
        foreach (double r in options.Ratios)
            if (double.IsNaN(r) || r < 0 || r >= 1)
                throw new ArgumentException($"Ratio {r.ToString(CultureInfo.InvariantCulture)} is outside [0, 1).", nameof(options));
        if (options.Criterion is IAccumulatingCriterion)
            throw new ArgumentException($"{options.Criterion.GetType().Name} learns from gradients during training; a sensitivity scan needs a criterion that scores the weights alone, such as MagnitudeCriterion.", nameof(options));
        double[] ratios = options.Ratios.Distinct().Order().ToArray();
        IReadOnlyList<string> names = options.Targets.Resolve(model);

        double baseline = Evaluate(evaluate, model, "the baseline", null);
        var layers = new List<LayerSensitivity>();
        foreach (string name in names)
        {
            Parameter weight = model.get_parameter(name)!;
            using Tensor saved = weight.detach().clone();
            var points = new List<(double, double)>();
            try
            {
                foreach (double ratio in ratios)
                {
                    using (var pruner = new GradualPruner(model, new PruningOptions
                    {
                        Schedule = new OneShotSchedule(ratio),
                        Targets = PruningTargets.Default.Include(name),
                        Criterion = options.Criterion,
                        Granularity = options.Granularity,
                    }))
                    {
                        pruner.Step();
                    }
                    points.Add((ratio, Evaluate(evaluate, model, name, ratio)));
                    Restore(weight, saved);
                }
            }
            finally
            {
                Restore(weight, saved);
            }
            layers.Add(new LayerSensitivity(name, weight.numel(), points));
        }
        return new SensitivityResult(baseline, options.Direction, layers);
    }

    private static void Restore(Parameter weight, Tensor saved)
    {
        using var _ = torch.no_grad();
        weight.copy_(saved);
    }

    private static double Evaluate(Func<nn.Module, double> evaluate, nn.Module model, string layer, double? ratio)
    {
        double value;
        try
        {
            value = evaluate(model);
        }
        catch (Exception e)
        {
            throw new SensitivityScanException(ratio is null ? $"The evaluation callback failed on {layer}: {e.Message}"
                : $"The evaluation callback failed with '{layer}' pruned to {ratio.Value.ToString(CultureInfo.InvariantCulture)}: {e.Message}", e);
        }
        if (!double.IsFinite(value))
            throw new SensitivityScanException($"The evaluation callback returned {value} for {(ratio is null ? layer : $"'{layer}' at {ratio.Value.ToString(CultureInfo.InvariantCulture)}")}; the metric must be finite.");
        return value;
    }
}

/// <summary>The evaluation callback failed during a sensitivity scan (the weights were restored).</summary>
public sealed class SensitivityScanException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>One layer's curve: the metric at each probed ratio.</summary>
public sealed record LayerSensitivity(string Name, long Size, IReadOnlyList<(double Ratio, double Metric)> Points);

/// <summary>The outcome of <see cref="SensitivityScan.Run"/>, and the per-layer sparsities derived from it.</summary>
public sealed class SensitivityResult
{
    /// <summary>Creates a result (also for tests and for curves measured elsewhere).</summary>
    public SensitivityResult(double baseline, MetricDirection direction, IReadOnlyList<LayerSensitivity> layers)
    {
        ArgumentNullException.ThrowIfNull(layers);
        if (layers.Count == 0) throw new ArgumentException("A sensitivity result needs at least one layer.", nameof(layers));
        foreach (var layer in layers)
        {
            if (layer.Points.Count == 0) throw new ArgumentException($"Layer '{layer.Name}' has no points.", nameof(layers));
            if (layer.Size <= 0) throw new ArgumentException($"Layer '{layer.Name}' has size {layer.Size}.", nameof(layers));
            for (int i = 1; i < layer.Points.Count; i++)
                if (layer.Points[i].Ratio <= layer.Points[i - 1].Ratio)
                    throw new ArgumentException($"Layer '{layer.Name}': ratios must increase.", nameof(layers));
        }
        Baseline = baseline;
        Direction = direction;
        Layers = layers;
    }

    /// <summary>The metric with nothing pruned.</summary>
    public double Baseline { get; }

    /// <summary>The metric's direction.</summary>
    public MetricDirection Direction { get; }

    /// <summary>One curve per probed layer, in model order.</summary>
    public IReadOnlyList<LayerSensitivity> Layers { get; }

    /// <summary>How much worse than the baseline <paramref name="metric"/> is (positive = worse).</summary>
    public double Drop(double metric) => Direction == MetricDirection.HigherIsBetter ? Baseline - metric : metric - Baseline;

    /// <summary>
    /// Per-layer sparsities for a threshold on the metric drop: each layer gets the largest sparsity whose drop,
    /// and the drop at every smaller probed ratio, stays at or under <paramref name="maxDrop"/>. Between probed
    /// ratios the curve is interpolated linearly (from drop 0 at sparsity 0), so the result is continuous in the
    /// threshold. A layer that exceeds the threshold at its first probe stays dense.
    /// </summary>
    public IReadOnlyDictionary<string, double> SparsitiesForMaxDrop(double maxDrop)
    {
        if (double.IsNaN(maxDrop) || maxDrop < 0) throw new ArgumentOutOfRangeException(nameof(maxDrop), maxDrop, "The tolerated drop must be ≥ 0.");
        return Layers.ToDictionary(l => l.Name, l => SparsityAt(l, maxDrop));
    }

    /// <summary>
    /// Per-layer sparsities whose weighted total over the probed layers is exactly <paramref name="totalSparsity"/>,
    /// found by bisecting the threshold of <see cref="SparsitiesForMaxDrop"/>: the most sensitive layers are pruned
    /// least. Hand the result to <see cref="PruningOptions.SparsityOverrides"/>.
    /// </summary>
    /// <exception cref="BudgetNotMetException">Even at the largest probed ratio everywhere the total stays below the target.</exception>
    public IReadOnlyDictionary<string, double> SparsitiesForTotal(double totalSparsity)
    {
        if (double.IsNaN(totalSparsity) || totalSparsity < 0 || totalSparsity >= 1)
            throw new ArgumentOutOfRangeException(nameof(totalSparsity), totalSparsity, "The total sparsity must be in [0, 1).");
        long size = Layers.Sum(l => l.Size);
        double Total(double threshold) => Layers.Sum(l => SparsityAt(l, threshold) * l.Size) / size;
        double reachable = Layers.Sum(l => l.Points[^1].Ratio * l.Size) / size;
        if (totalSparsity > reachable + 1e-12)
            throw new BudgetNotMetException($"A total of {totalSparsity:P2} cannot be met: pruning every layer to its largest probed ratio gives {reachable:P2}. Probe larger ratios.");
        double low = 0, high = Layers.SelectMany(l => l.Points).Max(p => Math.Abs(Drop(p.Metric))) + 1;
        // A layer's interpolated curve may not be monotone; the "never exceeded so far" rule makes Total monotone in
        // the threshold, so bisection converges.
        while (Total(high) < totalSparsity) high *= 2;
        for (int i = 0; i < 200 && high - low > 1e-12 * Math.Max(1, high); i++)
        {
            double mid = (low + high) / 2;
            if (Total(mid) >= totalSparsity) high = mid; else low = mid;
        }
        var result = Layers.ToDictionary(l => l.Name, l => SparsityAt(l, high));
        // Bisection lands at or just above the target; trim the excess off the layer with the most room to give.
        double excess = (Total(high) - totalSparsity) * size;
        if (excess > 0)
        {
            var layer = Layers.Where(l => result[l.Name] > 0).OrderByDescending(l => result[l.Name] * l.Size).First();
            result[layer.Name] = Math.Max(0, result[layer.Name] - excess / layer.Size);
        }
        return result;
    }

    /// <summary>Per-layer sparsities for a budget of non-zero weights over the probed layers.</summary>
    public IReadOnlyDictionary<string, double> SparsitiesForNonZeros(long nonZeros)
    {
        long size = Layers.Sum(l => l.Size);
        if (nonZeros <= 0 || nonZeros > size) throw new ArgumentOutOfRangeException(nameof(nonZeros), nonZeros, $"The budget must be in [1, {size}].");
        return SparsitiesForTotal(1 - (double)nonZeros / size);
    }

    private double SparsityAt(LayerSensitivity layer, double threshold)
    {
        double previousRatio = 0, previousDrop = 0;
        foreach (var (ratio, metric) in layer.Points)
        {
            double drop = Drop(metric);
            if (drop > threshold)
            {
                // Linear interpolation between the last point within the threshold and this one.
                if (drop <= previousDrop) return previousRatio;
                return previousRatio + (ratio - previousRatio) * (threshold - previousDrop) / (drop - previousDrop);
            }
            previousRatio = ratio;
            previousDrop = Math.Max(previousDrop, drop);
        }
        return previousRatio;
    }

    /// <summary>CSV: layer, size, ratio, metric, drop (one row per probe, plus a baseline row at ratio 0).</summary>
    public string ToCsv()
    {
        var csv = new StringBuilder("layer,size,ratio,metric,drop\n");
        foreach (var layer in Layers)
        {
            csv.Append(CultureInfo.InvariantCulture, $"{layer.Name},{layer.Size},0,{Baseline:R},0\n");
            foreach (var (ratio, metric) in layer.Points)
                csv.Append(CultureInfo.InvariantCulture, $"{layer.Name},{layer.Size},{ratio:R},{metric:R},{Drop(metric):R}\n");
        }
        return csv.ToString();
    }

    /// <summary>A table: one row per layer, one column per ratio, cells = metric.</summary>
    public override string ToString()
    {
        double[] ratios = Layers.SelectMany(l => l.Points.Select(p => p.Ratio)).Distinct().Order().ToArray();
        int width = Math.Max(10, Layers.Max(l => l.Name.Length));
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"{"layer".PadRight(width)}  {"size",10}");
        foreach (double r in ratios) text.Append(CultureInfo.InvariantCulture, $"  {r,7:P0}");
        text.AppendLine().Append(CultureInfo.InvariantCulture, $"{"(baseline)".PadRight(width)}  {"",10}  {Baseline,7:G4}").AppendLine();
        foreach (var layer in Layers)
        {
            text.Append(CultureInfo.InvariantCulture, $"{layer.Name.PadRight(width)}  {layer.Size,10:N0}");
            foreach (double r in ratios)
            {
                var point = layer.Points.FirstOrDefault(p => p.Ratio == r);
                text.Append(CultureInfo.InvariantCulture, $"  {(layer.Points.Any(p => p.Ratio == r) ? point.Metric.ToString("G4", CultureInfo.InvariantCulture) : "-"),7}");
            }
            text.AppendLine();
        }
        return text.ToString().TrimEnd();
    }
}

/// <summary>A sparsity, parameter or latency budget that cannot be met with what was measured.</summary>
public sealed class BudgetNotMetException(string message) : Exception(message);
