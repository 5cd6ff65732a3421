using System.Globalization;
using System.Text;
using Pruning.Samples;

namespace LargeSparseVsSmallDense.Harness;

/// <summary>One trained model's outcome.</summary>
/// <param name="Experiment">"mlp", "cnn", "mobilenet", "lstm" or "transformer".</param>
/// <param name="Model">"dense" or "sparse".</param>
/// <param name="Width">The width (MLP hidden units, CNN multiplier, LSTM hidden size, transformer dimension).</param>
/// <param name="Sparsity">Fraction of prunable weights that are zero.</param>
/// <param name="Nnz">Non-zero prunable weights, counted in the trained model.</param>
/// <param name="Metric">Test accuracy (images) or test perplexity (language models).</param>
/// <param name="Seed">The seed.</param>
public sealed record ResultRow(string Experiment, string Model, double Width, double Sparsity, long Nnz, double Metric, int Seed)
{
    /// <summary>"accuracy" or "perplexity".</summary>
    public string MetricName => IsLanguage(Experiment) ? "perplexity" : "accuracy";

    /// <summary>Whether <paramref name="experiment"/> is a language model's (measured by perplexity).</summary>
    public static bool IsLanguage(string experiment) => experiment is "lstm" or "transformer";
}

/// <summary>Tables, JSON and plots of result rows.</summary>
public static class Report
{
    /// <summary>Rows of one configuration averaged over seeds.</summary>
    public sealed record Summary(string Experiment, string Model, double Width, double Sparsity, double Nnz, double Mean, double Spread, int Seeds);

    /// <summary>Means and sample standard deviations per configuration, sorted by experiment, then NNZ.</summary>
    public static IReadOnlyList<Summary> Summarize(IEnumerable<ResultRow> rows) =>
        rows.GroupBy(r => (r.Experiment, r.Model, r.Width, Sparsity: Math.Round(r.Sparsity, 4)))
            .Select(g =>
            {
                double mean = g.Average(r => r.Metric);
                double sd = g.Count() > 1 ? Math.Sqrt(g.Sum(r => (r.Metric - mean) * (r.Metric - mean)) / (g.Count() - 1)) : 0;
                return new Summary(g.Key.Experiment, g.Key.Model, g.Key.Width, g.Key.Sparsity, g.Average(r => (double)r.Nnz), mean, sd, g.Count());
            })
            .OrderBy(s => s.Experiment).ThenBy(s => s.Nnz).ThenBy(s => s.Model).ToArray();

    /// <summary>A text table per experiment: model, width, sparsity, NNZ, metric (mean ± sd over seeds).</summary>
    public static string Table(IEnumerable<ResultRow> rows)
    {
        var text = new StringBuilder();
        foreach (var group in Summarize(rows).GroupBy(s => s.Experiment))
        {
            string metric = ResultRow.IsLanguage(group.Key) ? "test perplexity" : "test accuracy";
            text.AppendLine(CultureInfo.InvariantCulture, $"{group.Key}: {"model",-7} {"width",6} {"sparsity",9} {"NNZ",11}  {metric} (mean ± sd, seeds)");
            foreach (var s in group)
            {
                string value = ResultRow.IsLanguage(group.Key) ? $"{s.Mean:F2} ± {s.Spread:F2}" : $"{s.Mean * 100:F2} ± {s.Spread * 100:F2} %";
                text.AppendLine(CultureInfo.InvariantCulture, $"{"",5} {s.Model,-7} {s.Width,6:0.###} {s.Sparsity,9:P1} {s.Nnz,11:N0}  {value} ({s.Seeds})");
            }
        }
        return text.ToString().TrimEnd();
    }

    /// <summary>Writes the rows as a JSON array of objects with experiment, model, width, sparsity, nnz, metric, metric_name, seed.</summary>
    public static void WriteJson(string path, IEnumerable<ResultRow> rows)
    {
        var objects = rows.Select(r => new Dictionary<string, object>
        {
            ["experiment"] = r.Experiment, ["model"] = r.Model, ["width"] = r.Width, ["sparsity"] = r.Sparsity,
            ["nnz"] = r.Nnz, ["metric"] = r.Metric, ["metric_name"] = r.MetricName, ["seed"] = r.Seed,
        });
        JsonSummary.Write(path, objects);
    }

    /// <summary>A PNG of metric vs NNZ: the dense family as one curve, each sparse width as its own curve.</summary>
    public static void Plot(IEnumerable<ResultRow> rows, string experiment, string path, string title)
    {
        var summaries = Summarize(rows.Where(r => r.Experiment == experiment)).ToArray();
        if (summaries.Length == 0) return;
        bool perplexity = ResultRow.IsLanguage(experiment);
        double Scale(double v) => perplexity ? v : v * 100;
        var plot = new ScottPlot.Plot();
        var dense = summaries.Where(s => s.Model == "dense").OrderBy(s => s.Nnz).ToArray();
        if (dense.Length > 0)
        {
            var line = plot.Add.Scatter(dense.Select(s => Math.Log10(s.Nnz)).ToArray(), dense.Select(s => Scale(s.Mean)).ToArray());
            line.LegendText = "dense, by width";
            line.LineWidth = 3;
        }
        foreach (var width in summaries.Where(s => s.Model == "sparse").GroupBy(s => s.Width))
        {
            var points = width.OrderBy(s => s.Nnz).ToArray();
            var line = plot.Add.Scatter(points.Select(s => Math.Log10(s.Nnz)).ToArray(), points.Select(s => Scale(s.Mean)).ToArray());
            line.LegendText = $"width {width.Key:0.###}, pruned";
            line.LinePattern = ScottPlot.LinePattern.Dashed;
        }
        plot.Title(title);
        plot.XLabel("non-zero weights (log10)");
        plot.YLabel(perplexity ? "test perplexity (lower is better)" : "test accuracy (%)");
        plot.ShowLegend(perplexity ? ScottPlot.Alignment.UpperRight : ScottPlot.Alignment.LowerRight);
        plot.SavePng(path, 900, 600);
    }
}
