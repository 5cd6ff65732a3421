using Pruning.Configuration;

namespace Pruning.Scheduling;

/// <summary>
/// One sparsity throughout: masks are recomputed every <see cref="Frequency"/> steps from <see cref="BeginStep"/> to
/// <see cref="EndStep"/>, always to the same target, so pruned weights can be swapped for ones that grew larger.
/// </summary>
public sealed class ConstantSparsitySchedule : PruningSchedule
{
    /// <summary>Creates the schedule.</summary>
    /// <param name="sparsity">The target, in [0, 1).</param>
    /// <param name="beginStep">The first update step (≥ 0).</param>
    /// <param name="frequency">Steps between updates (&gt; 0).</param>
    /// <param name="endStep">The last step at which masks may be recomputed (≥ <paramref name="beginStep"/>);
    /// masks stay fixed afterwards. Defaults to never stopping.</param>
    public ConstantSparsitySchedule(double sparsity, long beginStep = 0, long frequency = 100, long endStep = long.MaxValue)
    {
        ValidateSparsity(sparsity, nameof(sparsity));
        ArgumentOutOfRangeException.ThrowIfNegative(beginStep);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(frequency);
        ArgumentOutOfRangeException.ThrowIfLessThan(endStep, beginStep);
        FinalSparsity = sparsity;
        BeginStep = beginStep;
        Frequency = frequency;
        EndStep = endStep;
    }

    /// <inheritdoc />
    public override double FinalSparsity { get; }

    /// <inheritdoc />
    public override long BeginStep { get; }

    /// <inheritdoc />
    public override long EndStep { get; }

    /// <summary>Steps between updates.</summary>
    public long Frequency { get; }

    /// <inheritdoc />
    public override bool IsUpdateStep(long step) => step >= BeginStep && step <= EndStep && (step - BeginStep) % Frequency == 0;

    /// <inheritdoc />
    public override double SparsityAt(long step) => step < BeginStep ? 0 : FinalSparsity;

    /// <inheritdoc />
    protected override long NextUpdateAfter(long step)
    {
        if (step < BeginStep) return BeginStep;
        long next = BeginStep + ((step - BeginStep) / Frequency + 1) * Frequency;
        return next > EndStep || next < 0 ? long.MaxValue : next;
    }

    /// <inheritdoc />
    public override PruningSchedule WithFinalSparsity(double finalSparsity) => new ConstantSparsitySchedule(finalSparsity, BeginStep, Frequency, EndStep);

    /// <inheritdoc />
    public override ComponentConfig Config => new("ConstantSparsity", ("sparsity", FinalSparsity), ("begin", BeginStep), ("end", EndStep), ("frequency", Frequency));
}
