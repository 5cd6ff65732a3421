using Pruning.Configuration;

namespace Pruning.Scheduling;

/// <summary>Prunes once, at <see cref="BeginStep"/>, straight to the target; training afterwards only fine-tunes.</summary>
public sealed class OneShotSchedule : PruningSchedule
{
    /// <summary>Creates the schedule.</summary>
    /// <param name="sparsity">The target, in [0, 1).</param>
    /// <param name="step">The step at which masks are computed (≥ 0).</param>
    public OneShotSchedule(double sparsity, long step = 0)
    {
        ValidateSparsity(sparsity, nameof(sparsity));
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        FinalSparsity = sparsity;
        BeginStep = step;
    }

    /// <inheritdoc />
    public override double FinalSparsity { get; }

    /// <inheritdoc />
    public override long BeginStep { get; }

    /// <inheritdoc />
    public override long EndStep => BeginStep;

    /// <inheritdoc />
    public override bool IsUpdateStep(long step) => step == BeginStep;

    /// <inheritdoc />
    public override double SparsityAt(long step) => step < BeginStep ? 0 : FinalSparsity;

    /// <inheritdoc />
    protected override long NextUpdateAfter(long step) => step < BeginStep ? BeginStep : long.MaxValue;

    /// <inheritdoc />
    public override PruningSchedule WithFinalSparsity(double finalSparsity) => new OneShotSchedule(finalSparsity, BeginStep);

    /// <inheritdoc />
    public override ComponentConfig Config => new("OneShot", ("sparsity", FinalSparsity), ("step", BeginStep));
}
