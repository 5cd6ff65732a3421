using Pruning.Configuration;

namespace Pruning.Scheduling;

/// <summary>
/// The gradual schedule of Zhu &amp; Gupta (2017), "To prune, or not to prune":
/// <c>s_t = s_f + (s_i − s_f)·(1 − (t − t0)/(n·Δt))^p</c> for t ∈ {t0, t0+Δt, …, t0+n·Δt}, with p = 3 in the paper.
/// Sparsity rises fast while the network has many redundant weights and slowly as it approaches the target.
/// </summary>
public sealed class PolynomialDecaySchedule : PruningSchedule
{
    /// <summary>Creates the schedule from its begin and end steps.</summary>
    /// <param name="initialSparsity">s_i, the sparsity of the first update, in [0, 1).</param>
    /// <param name="finalSparsity">s_f, reached at <paramref name="endStep"/>, in [s_i, 1).</param>
    /// <param name="beginStep">t0, the first update step (≥ 0).</param>
    /// <param name="endStep">The last update step (&gt; t0). It is always an update step, even when
    /// <c>endStep − beginStep</c> is not a multiple of <paramref name="frequency"/>, so the final sparsity is never missed.</param>
    /// <param name="frequency">Δt, the number of steps between updates (&gt; 0).</param>
    /// <param name="power">The exponent p (&gt; 0); 3 in the paper.</param>
    public PolynomialDecaySchedule(double initialSparsity, double finalSparsity, long beginStep, long endStep, long frequency = 100, double power = 3)
    {
        ValidateSparsity(initialSparsity, nameof(initialSparsity));
        ValidateSparsity(finalSparsity, nameof(finalSparsity));
        if (finalSparsity < initialSparsity)
            throw new ArgumentOutOfRangeException(nameof(finalSparsity), finalSparsity,
                $"finalSparsity ({finalSparsity}) must not be below initialSparsity ({initialSparsity}).");
        ArgumentOutOfRangeException.ThrowIfNegative(beginStep);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(endStep, beginStep);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(frequency);
        if (double.IsNaN(power) || power <= 0 || double.IsInfinity(power))
            throw new ArgumentOutOfRangeException(nameof(power), power, "power must be a positive finite number.");

        InitialSparsity = initialSparsity;
        FinalSparsity = finalSparsity;
        BeginStep = beginStep;
        EndStep = endStep;
        Frequency = frequency;
        Power = power;
    }

    /// <summary>The paper's form: <paramref name="updates"/> = n updates after the first, Δt apart, so the last is at t0 + n·Δt.</summary>
    /// <param name="initialSparsity">s_i, in [0, 1).</param>
    /// <param name="finalSparsity">s_f, in [s_i, 1).</param>
    /// <param name="beginStep">t0 (≥ 0).</param>
    /// <param name="frequency">Δt (&gt; 0).</param>
    /// <param name="updates">n (&gt; 0).</param>
    /// <param name="power">The exponent p; 3 in the paper.</param>
    public static PolynomialDecaySchedule FromUpdates(double initialSparsity, double finalSparsity, long beginStep, long frequency, int updates, double power = 3)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(frequency);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(updates);
        return new PolynomialDecaySchedule(initialSparsity, finalSparsity, beginStep, checked(beginStep + frequency * updates), frequency, power);
    }

    /// <summary>s_i.</summary>
    public double InitialSparsity { get; }

    /// <inheritdoc />
    public override double FinalSparsity { get; }

    /// <inheritdoc />
    public override long BeginStep { get; }

    /// <inheritdoc />
    public override long EndStep { get; }

    /// <summary>Δt.</summary>
    public long Frequency { get; }

    /// <summary>The exponent p.</summary>
    public double Power { get; }

    /// <inheritdoc />
    public override bool IsUpdateStep(long step) =>
        step >= BeginStep && step <= EndStep && ((step - BeginStep) % Frequency == 0 || step == EndStep);

    /// <inheritdoc />
    public override double SparsityAt(long step)
    {
        if (step < BeginStep) return 0;
        if (step >= EndStep) return FinalSparsity;
        if (step == BeginStep) return InitialSparsity; // exactly s_i, without rounding through the formula
        double progress = (double)(step - BeginStep) / (EndStep - BeginStep);
        return FinalSparsity + (InitialSparsity - FinalSparsity) * Math.Pow(1 - progress, Power);
    }

    /// <inheritdoc />
    protected override long NextUpdateAfter(long step)
    {
        if (step >= EndStep) return long.MaxValue;
        long next = step < BeginStep ? BeginStep : BeginStep + ((step - BeginStep) / Frequency + 1) * Frequency;
        return Math.Min(next, EndStep);
    }

    /// <inheritdoc />
    /// <remarks>The initial sparsity is lowered to the new final one if it was higher.</remarks>
    public override PruningSchedule WithFinalSparsity(double finalSparsity) =>
        new PolynomialDecaySchedule(Math.Min(InitialSparsity, finalSparsity), finalSparsity, BeginStep, EndStep, Frequency, Power);

    /// <inheritdoc />
    public override ComponentConfig Config => new("PolynomialDecay", ("initial", InitialSparsity), ("final", FinalSparsity), ("begin", BeginStep), ("end", EndStep), ("frequency", Frequency), ("power", Power));
}
