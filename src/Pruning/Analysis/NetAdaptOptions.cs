namespace Pruning.Analysis;

/// <summary>What NetAdapt aims for and how it steps.</summary>
public sealed class NetAdaptOptions
{
    /// <summary>The budget as a fraction of the dense model's cost (its table latency, or its MACs), e.g. 0.5. In (0, 1].</summary>
    public double TargetCostFraction { get; init; } = 0.5;

    /// <summary>The cut each iteration aims for (ΔR), as a fraction of the dense cost, e.g. 0.1. In (0, 1].</summary>
    public double ReductionPerIteration { get; init; } = 0.1;

    /// <summary>The metric's direction.</summary>
    public MetricDirection Direction { get; init; } = MetricDirection.HigherIsBetter;

    /// <summary>A bound on iterations (default 100).</summary>
    public int MaxIterations { get; init; } = 100;

    internal void Validate()
    {
        if (!(TargetCostFraction > 0 && TargetCostFraction <= 1))
            throw new ArgumentOutOfRangeException("options", TargetCostFraction, "NetAdaptOptions.TargetCostFraction must be in (0, 1].");
        if (!(ReductionPerIteration > 0 && ReductionPerIteration <= 1))
            throw new ArgumentOutOfRangeException("options", ReductionPerIteration, "NetAdaptOptions.ReductionPerIteration must be in (0, 1].");
        if (!Enum.IsDefined(Direction))
            throw new ArgumentOutOfRangeException("options", Direction, "NetAdaptOptions.Direction is not a known direction.");
        if (MaxIterations < 1)
            throw new ArgumentOutOfRangeException("options", MaxIterations, "NetAdaptOptions.MaxIterations must be positive.");
    }
}
