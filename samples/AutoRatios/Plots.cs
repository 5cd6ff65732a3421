using System.Globalization;
using Pruning.Analysis.Amc;

internal static class Plots
{
    /// <summary>Reward per episode (and the best so far) on the left axis, the resource kept against the budget on the right.</summary>
    public static void Episodes(AmcResult result, double budget, string path, string title)
    {
        var plot = new ScottPlot.Plot();
        double[] x = result.Episodes.Select(e => (double)e.Episode).ToArray();
        var reward = plot.Add.Scatter(x, result.Episodes.Select(e => e.Reward).ToArray());
        reward.LegendText = "reward (validation accuracy)";
        reward.LineWidth = 0;
        reward.MarkerSize = 3;
        double best = double.NegativeInfinity;
        var bestLine = plot.Add.Scatter(x, result.Episodes.Select(e => best = Math.Max(best, e.Reward)).ToArray());
        bestLine.LegendText = "best so far";
        var resource = plot.Add.Scatter(x, result.Episodes.Select(e => e.Resource).ToArray());
        resource.LegendText = "resource kept (right axis)";
        resource.LineWidth = 0;
        resource.MarkerSize = 3;
        resource.Axes.YAxis = plot.Axes.Right;
        var limit = plot.Add.HorizontalLine(budget);
        limit.Axes.YAxis = plot.Axes.Right;
        limit.LegendText = "budget";
        var warmup = result.Episodes.Count(e => e.Warmup);
        plot.Add.VerticalLine(warmup - 0.5).LegendText = "end of warm-up";
        plot.Axes.Right.Label.Text = "fraction of the resource kept";
        plot.Title(title);
        plot.XLabel("episode");
        plot.YLabel("reward");
        plot.ShowLegend(ScottPlot.Alignment.LowerRight);
        plot.SavePng(path, 1000, 600);
    }

    public static void Table(List<Dictionary<string, object>> rows)
    {
        Console.WriteLine();
        Console.WriteLine("| mode | method | test accuracy % | kept | search (s) | ratios (mean over seeds) |");
        Console.WriteLine("|---|---|---|---|---|---|");
        foreach (var group in rows.GroupBy(r => ((string)r["mode"], (string)r["method"])))
        {
            double[] acc = group.Select(r => (double)r["metric"] * 100).ToArray();
            double mean = acc.Average(), sd = acc.Length > 1 ? Math.Sqrt(acc.Sum(a => (a - mean) * (a - mean)) / (acc.Length - 1)) : 0;
            var ratios = group.SelectMany(r => (Dictionary<string, double>)r["ratios"]).GroupBy(kv => kv.Key).Select(g => $"{g.Key.Replace(".weight", "")} {g.Average(kv => kv.Value):P0}");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {group.Key.Item1} | {group.Key.Item2} | {mean:F2} ± {sd:F2} | {group.Average(r => (double)r["achieved"]):P1} | {group.Average(r => (double)r["search_seconds"]):F0} | {string.Join(", ", ratios)} |"));
        }
    }
}
