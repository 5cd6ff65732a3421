using System.Globalization;

namespace Pruning.Analysis;

/// <summary>What a search's cost counts.</summary>
public enum CostUnit
{
    /// <summary>Estimated latency from a <see cref="LatencyTable"/>, in milliseconds.</summary>
    Milliseconds,

    /// <summary>Multiply-accumulates of the Conv2d and Linear layers (<see cref="Structure.ChannelGraph.Macs(double)"/>).</summary>
    Macs,
}

/// <summary>A model's cost as a search estimates it, with its unit: a latency and a MAC count never pass for each other.</summary>
/// <param name="Value">The amount, in <paramref name="Unit"/>.</param>
/// <param name="Unit">What it counts.</param>
public readonly record struct Cost(double Value, CostUnit Unit)
{
    /// <summary>How many times <paramref name="other"/> this is (2 when this costs twice as much).</summary>
    /// <exception cref="ArgumentException">The units differ.</exception>
    public double Ratio(Cost other)
    {
        if (other.Unit != Unit) throw new ArgumentException($"A cost in {Unit} cannot be compared with one in {other.Unit}.", nameof(other));
        return Value / other.Value;
    }

    /// <summary>"123.4 µs" or "4.56 M MACs".</summary>
    public override string ToString() => Unit == CostUnit.Milliseconds
        ? string.Create(CultureInfo.InvariantCulture, $"{Value * 1000:F1} µs")
        : string.Create(CultureInfo.InvariantCulture, $"{Value / 1e6:F2} M MACs");
}
