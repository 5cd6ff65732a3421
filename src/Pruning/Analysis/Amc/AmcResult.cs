using System.Globalization;
using System.Text;

namespace Pruning.Analysis.Amc;

/// <summary>One episode of a search: the ratio chosen per layer (after the budget clip), what it kept, and how it scored.</summary>
/// <param name="Episode">0-based.</param>
/// <param name="Warmup">Whether the actions were random (warm-up).</param>
/// <param name="Ratios">Per searched layer, the fraction pruned (elements in fine mode, channels in channel mode).</param>
/// <param name="Resource">The fraction of the resource kept (≤ the budget).</param>
/// <param name="Metric">What the evaluation callback returned.</param>
/// <param name="Reward">The reward the agent learned from.</param>
public sealed record AmcEpisode(int Episode, bool Warmup, IReadOnlyList<double> Ratios, double Resource, double Metric, double Reward);

/// <summary>What an AMC search found.</summary>
public sealed class AmcResult
{
    internal AmcResult(IReadOnlyList<string> layers, AmcEpisode best, IReadOnlyList<AmcEpisode> episodes, double seconds)
    {
        Layers = layers;
        Best = best;
        Episodes = episodes;
        Seconds = seconds;
    }

    /// <summary>The searched layers' weight names (channel mode: the producers'), in order.</summary>
    public IReadOnlyList<string> Layers { get; }

    /// <summary>The episode with the highest reward.</summary>
    public AmcEpisode Best { get; }

    /// <summary>Every episode, in order.</summary>
    public IReadOnlyList<AmcEpisode> Episodes { get; }

    /// <summary>Wall-clock time of the search (this run; a resumed search counts from the resume).</summary>
    public double Seconds { get; }

    /// <summary>The best policy: per layer, the fraction pruned.</summary>
    public IReadOnlyDictionary<string, double> Ratios => Layers.Zip(Best.Ratios).ToDictionary(p => p.First, p => p.Second);

    /// <summary>The best policy as <see cref="PruningOptions.Overrides"/> (fine mode: then gradual pruning with the cubic schedule).</summary>
    public IReadOnlyDictionary<string, ParameterOverride> Overrides => ParameterOverride.FinalSparsities(Ratios);

    /// <summary>The episode log: episode, warmup, one column per layer, resource, metric, reward.</summary>
    public string ToCsv()
    {
        var csv = new StringBuilder();
        csv.AppendLine(string.Join(",", new[] { "episode", "warmup" }.Concat(Layers).Concat(["resource", "metric", "reward"])));
        foreach (AmcEpisode e in Episodes)
            csv.AppendLine(string.Join(",", new[] { e.Episode.ToString(CultureInfo.InvariantCulture), e.Warmup ? "1" : "0" }
                .Concat(e.Ratios.Select(r => r.ToString("R", CultureInfo.InvariantCulture)))
                .Concat([e.Resource.ToString("R", CultureInfo.InvariantCulture), e.Metric.ToString("R", CultureInfo.InvariantCulture), e.Reward.ToString("R", CultureInfo.InvariantCulture)])));
        return csv.ToString();
    }

    /// <inheritdoc />
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"AMC: best of {Episodes.Count} episodes: metric {Best.Metric:G5}, resource kept {Best.Resource:P2}; ratios {string.Join(", ", Ratios.Select(r => $"{r.Key} {r.Value:P1}"))}");
}
