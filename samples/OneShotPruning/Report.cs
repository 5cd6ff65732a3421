using System.Globalization;

/// <summary>One evaluated model: a method at a pattern, one seed, before or after fine-tuning.</summary>
internal sealed record Result(string Model, string MetricName, bool HigherIsBetter, string Method, string Label, double Sparsity, bool NOfM, int CalibrationSamples, bool FineTuned,
    double Metric, int Seed, double Seconds, double AchievedSparsity, long CovarianceBytes)
{
    /// <summary>The summary's keys, as the issue names them, plus the measured sparsity and the largest H held.</summary>
    public Dictionary<string, object> ToJson()
    {
        var row = new Dictionary<string, object> { ["model"] = Model, ["method"] = Method };
        if (NOfM) row["pattern"] = Label;
        else row["sparsity"] = Sparsity;
        row["calibration_samples"] = Method == "magnitude" ? 0 : CalibrationSamples;
        row["finetuned"] = FineTuned;
        row["metric"] = Metric;
        row["metric_name"] = MetricName;
        row["higher_is_better"] = HigherIsBetter;
        row["seed"] = Seed;
        row["seconds"] = Seconds;
        row["achieved_sparsity"] = AchievedSparsity;
        row["covariance_bytes"] = CovarianceBytes;
        return row;
    }

    /// <summary>Reads the rows back from a summary written by <see cref="ToJson"/>.</summary>
    public static List<Result> Read(string path)
    {
        using var document = System.Text.Json.JsonDocument.Parse(File.ReadAllText(path));
        return document.RootElement.EnumerateArray().Select(e =>
        {
            bool nOfM = e.TryGetProperty("pattern", out var pattern);
            double sparsity = nOfM ? 0.5 : e.GetProperty("sparsity").GetDouble();
            string label = nOfM ? pattern.GetString()! : string.Create(CultureInfo.InvariantCulture, $"{sparsity * 100:F0}%");
            return new Result(e.GetProperty("model").GetString()!, e.GetProperty("metric_name").GetString()!, e.GetProperty("higher_is_better").GetBoolean(),
                e.GetProperty("method").GetString()!, label, sparsity, nOfM, e.GetProperty("calibration_samples").GetInt32(), e.GetProperty("finetuned").GetBoolean(),
                e.GetProperty("metric").GetDouble(), e.GetProperty("seed").GetInt32(), e.GetProperty("seconds").GetDouble(),
                e.GetProperty("achieved_sparsity").GetDouble(), e.GetProperty("covariance_bytes").GetInt64());
        }).ToList();
    }
}

internal static class Report
{
    private static (double Mean, double Sd) Stats(IEnumerable<double> values)
    {
        double[] v = values.ToArray();
        double mean = v.Average();
        double sd = v.Length > 1 ? Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Length - 1)) : 0;
        return (mean, sd);
    }

    /// <summary>Mean ± sd per model, pattern and method, without and with fine-tuning, and the pruning time.</summary>
    public static void Table(IReadOnlyList<Result> rows)
    {
        foreach (var model in rows.GroupBy(r => r.Model))
        {
            bool accuracy = model.First().HigherIsBetter;
            string Format((double Mean, double Sd) s) => accuracy
                ? string.Create(CultureInfo.InvariantCulture, $"{s.Mean * 100:F2} ± {s.Sd * 100:F2}")
                : string.Create(CultureInfo.InvariantCulture, $"{s.Mean:F1} ± {s.Sd:F1}");
            Console.WriteLine();
            Console.WriteLine($"| {model.Key} | method | {(accuracy ? "accuracy %" : "perplexity")}, one-shot | after fine-tune | prune time (s) | largest H |");
            Console.WriteLine("|---|---|---|---|---|---|");
            foreach (var setting in model.GroupBy(r => (r.Label, r.Method)))
            {
                var once = setting.Where(r => !r.FineTuned).ToList();
                var tuned = setting.Where(r => r.FineTuned).ToList();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {setting.Key.Label} | {setting.Key.Method} | {Format(Stats(once.Select(r => r.Metric)))} | {(tuned.Count > 0 ? Format(Stats(tuned.Select(r => r.Metric))) : "–")} | {Stats(once.Select(r => r.Seconds)).Mean:F2} | {Bytes(once[0].CovarianceBytes)} |"));
            }
        }
    }

    private static string Bytes(long bytes) => bytes == 0 ? "–" : bytes < 1 << 20
        ? string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:F0} KiB")
        : string.Create(CultureInfo.InvariantCulture, $"{bytes / 1048576.0:F1} MiB");

    /// <summary>Metric against sparsity per method (2:4 is not on the axis): one-shot solid, after fine-tuning dashed.</summary>
    public static void Plot(IReadOnlyList<Result> rows, string path)
    {
        if (rows.Count == 0) return;
        Result task = rows[0];
        var plot = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var methods = rows.Select(r => r.Method).Distinct().ToList();
        foreach (var group in rows.Where(r => !r.NOfM).GroupBy(r => (r.Method, r.FineTuned)))
        {
            var points = group.GroupBy(r => r.Sparsity).OrderBy(g => g.Key).Select(g => (X: g.Key * 100, Y: Stats(g.Select(r => r.Metric)).Mean)).ToArray();
            // Accuracy in %, perplexity on a log axis (one-shot magnitude reaches thousands).
            var line = plot.Add.Scatter(points.Select(p => p.X).ToArray(), points.Select(p => task.HigherIsBetter ? p.Y * 100 : Math.Log10(p.Y)).ToArray());
            line.LegendText = group.Key.FineTuned ? $"{group.Key.Method}, fine-tuned" : $"{group.Key.Method}, one-shot";
            line.Color = palette.GetColor(methods.IndexOf(group.Key.Method));
            if (group.Key.FineTuned) line.LinePattern = ScottPlot.LinePattern.Dashed;
        }
        plot.Title($"{task.Model}: one-shot pruning without retraining (solid) and after a short fine-tune (dashed)");
        plot.XLabel("sparsity of the pruned weights (%)");
        plot.YLabel(task.HigherIsBetter ? "test accuracy (%)" : "test perplexity, log scale (lower is better)");
        if (!task.HigherIsBetter)
            plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
            {
                LabelFormatter = y => Math.Pow(10, y).ToString("N0", CultureInfo.InvariantCulture),
            };
        plot.ShowLegend(task.HigherIsBetter ? ScottPlot.Alignment.LowerLeft : ScottPlot.Alignment.UpperLeft);
        plot.SavePng(path, 1000, 650);
    }
}
