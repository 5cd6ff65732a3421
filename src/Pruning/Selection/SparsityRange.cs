namespace Pruning.Selection;

/// <summary>Bounds on one tensor's sparsity.</summary>
public readonly record struct SparsityRange
{
    /// <summary>No bound: [0, 1) (one weight or group always survives anyway).</summary>
    public static SparsityRange Unbounded { get; } = new(0, Math.BitDecrement(1.0));

    /// <summary>Creates the range.</summary>
    /// <param name="min">Lowest sparsity, in [0, 1).</param>
    /// <param name="max">Highest sparsity, in [min, 1).</param>
    public SparsityRange(double min, double max)
    {
        if (double.IsNaN(min) || min < 0 || min >= 1)
            throw new ArgumentOutOfRangeException(nameof(min), min, $"min must be in [0, 1); got {min}.");
        if (double.IsNaN(max) || max < min || max >= 1)
            throw new ArgumentOutOfRangeException(nameof(max), max, $"max must be in [min, 1); got {max} with min {min}.");
        (Min, Max) = (min, max);
    }

    /// <summary>Lowest sparsity.</summary>
    public double Min { get; }

    /// <summary>Highest sparsity.</summary>
    public double Max { get; }

    /// <summary><paramref name="sparsity"/> clamped into the range.</summary>
    public double Clamp(double sparsity) => Math.Clamp(sparsity, Min, Max);
}
