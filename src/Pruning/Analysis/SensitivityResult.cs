using System.Globalization;
using System.Text;

namespace Pruning.Analysis;

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
    /// least. Hand the result to <see cref="ParameterOverride.FinalSparsities"/>.
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
        // In whole weights: the pruner prunes round(s·n) per layer, so the ratios are made counts that add up to exactly
        // round(total·size) (largest remainders first), and each ratio is count/n, which the pruner rounds back to count.
        var exact = Layers.Select(l => SparsityAt(l, high) * l.Size).ToArray();
        var counts = exact.Select(Math.Floor).Select(c => (long)c).ToArray();
        long missing = Selection.MaskSelector.PrunedCount(totalSparsity, size) - counts.Sum();
        int[] order = Enumerable.Range(0, Layers.Count).OrderByDescending(i => exact[i] - counts[i]).ThenBy(i => i).ToArray();
        for (int pass = 0; missing != 0 && pass < 4; pass++)
            foreach (int i in order)
            {
                if (missing == 0) break;
                if (missing > 0 && counts[i] < Layers[i].Size - 1) { counts[i]++; missing--; }
                else if (missing < 0 && counts[i] > 0) { counts[i]--; missing++; }
            }
        return Layers.Select((l, i) => (l.Name, Sparsity: (double)counts[i] / l.Size)).ToDictionary(p => p.Name, p => p.Sparsity);
    }

    /// <summary>Per-layer sparsities for a budget of non-zero weights over the probed layers (exactly that many survive).</summary>
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
