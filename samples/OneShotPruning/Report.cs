using System.Globalization;

/// <summary>One evaluated model: a method at a pattern, one seed, before or after fine-tuning.</summary>
internal sealed record Result(ModelTask Task, string Method, string Label, double Sparsity, bool NOfM, int CalibrationSamples, bool FineTuned,
    double Metric, int Seed, double Seconds, double AchievedSparsity, long CovarianceBytes)
{
    /// <summary>The summary's keys, as the issue names them, plus the measured sparsity and the largest H held.</summary>
    public Dictionary<string, object> ToJson()
    {
        var row = new Dictionary<string, object> { ["model"] = Task.Name, ["method"] = Method };
        if (NOfM) row["pattern"] = Label;
        else row["sparsity"] = Sparsity;
        row["calibration_samples"] = Method == "magnitude" ? 0 : CalibrationSamples;
        row["finetuned"] = FineTuned;
        row["metric"] = Metric;
        row["metric_name"] = Task.MetricName;
        row["higher_is_better"] = Task.HigherIsBetter;
        row["seed"] = Seed;
        row["seconds"] = Seconds;
        row["achieved_sparsity"] = AchievedSparsity;
        row["covariance_bytes"] = CovarianceBytes;
        return row;
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
        foreach (var model in rows.GroupBy(r => r.Task))
        {
            bool accuracy = model.Key.HigherIsBetter;
            string Format((double Mean, double Sd) s) => accuracy
                ? string.Create(CultureInfo.InvariantCulture, $"{s.Mean * 100:F2} ± {s.Sd * 100:F2}")
                : string.Create(CultureInfo.InvariantCulture, $"{s.Mean:F1} ± {s.Sd:F1}");
            Console.WriteLine();
            Console.WriteLine($"| {model.Key.Name} | method | {(accuracy ? "accuracy %" : "perplexity")}, one-shot | after fine-tune | prune time (s) | largest H |");
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
        ModelTask task = rows[0].Task;
        var plot = new ScottPlot.Plot();
        foreach (var group in rows.Where(r => !r.NOfM).GroupBy(r => (r.Method, r.FineTuned)))
        {
            var points = group.GroupBy(r => r.Sparsity).OrderBy(g => g.Key).Select(g => (X: g.Key * 100, Y: Stats(g.Select(r => r.Metric)).Mean)).ToArray();
            var line = plot.Add.Scatter(points.Select(p => p.X).ToArray(), points.Select(p => task.HigherIsBetter ? p.Y * 100 : p.Y).ToArray());
            line.LegendText = group.Key.FineTuned ? $"{group.Key.Method}, fine-tuned" : $"{group.Key.Method}, one-shot";
            if (group.Key.FineTuned) line.LinePattern = ScottPlot.LinePattern.Dashed;
        }
        plot.Title($"{task.Name}: one-shot pruning without retraining (solid) and after a short fine-tune (dashed)");
        plot.XLabel("sparsity of the pruned weights (%)");
        plot.YLabel(task.HigherIsBetter ? "test accuracy (%)" : "test perplexity (lower is better)");
        if (!task.HigherIsBetter) plot.Axes.SetLimitsY(0, rows.Max(r => Math.Min(r.Metric, 5000)) * 1.05);
        plot.ShowLegend(task.HigherIsBetter ? ScottPlot.Alignment.LowerLeft : ScottPlot.Alignment.UpperLeft);
        plot.SavePng(path, 1000, 650);
    }
}
