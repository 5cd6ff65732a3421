namespace Pruning.Analysis;

/// <summary>One layer's curve: the metric at each probed ratio.</summary>
/// <param name="Name">The weight's name.</param>
/// <param name="Size">Its number of elements.</param>
/// <param name="Points">The metric at each probed ratio, ratios ascending.</param>
public sealed record LayerSensitivity(string Name, long Size, IReadOnlyList<(double Ratio, double Metric)> Points);
