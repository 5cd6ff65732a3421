using Pruning.Configuration;

namespace Pruning.Scheduling;

/// <summary>
/// When masks are recomputed and to which sparsity. A schedule is a pure function of the training step: it holds
/// no state, so a resumed run asks it the same questions and gets the same answers.
/// </summary>
/// <remarks>
/// Steps count calls to <see cref="GradualPruner.Step"/>, starting at 0. Before <see cref="BeginStep"/> nothing is
/// pruned; after <see cref="EndStep"/> the sparsity stays at <see cref="FinalSparsity"/>.
/// </remarks>
public abstract class PruningSchedule
{
    /// <summary>The first step at which masks are computed.</summary>
    public abstract long BeginStep { get; }

    /// <summary>The last step at which masks are computed.</summary>
    public abstract long EndStep { get; }

    /// <summary>The sparsity the schedule reaches at <see cref="EndStep"/> and keeps afterwards.</summary>
    public abstract double FinalSparsity { get; }

    /// <summary>Whether masks are recomputed at <paramref name="step"/>.</summary>
    public abstract bool IsUpdateStep(long step);

    /// <summary>
    /// The target sparsity in force at <paramref name="step"/>: 0 before <see cref="BeginStep"/>,
    /// <see cref="FinalSparsity"/> after <see cref="EndStep"/>.
    /// </summary>
    public abstract double SparsityAt(long step);

    /// <summary>Every update step up to <paramref name="throughStep"/>, in order, with the sparsity masks are recomputed to.</summary>
    /// <param name="throughStep">The last step to consider (schedules such as <see cref="ConstantSparsitySchedule"/> may never end).</param>
    public IEnumerable<(long Step, double Sparsity)> UpdateSteps(long throughStep = long.MaxValue)
    {
        for (long step = BeginStep; step <= EndStep && step <= throughStep;)
        {
            yield return (step, SparsityAt(step));
            long next = NextUpdateAfter(step);
            if (next <= step) yield break;
            step = next;
        }
    }

    /// <summary>The first update step after <paramref name="step"/>, or <see cref="long.MaxValue"/> when there is none.</summary>
    protected abstract long NextUpdateAfter(long step);

    /// <summary>The first update step at or after <paramref name="step"/>, or <see cref="long.MaxValue"/>.</summary>
    internal long NextUpdateFrom(long step) => IsUpdateStep(step) ? step : NextUpdateAfter(step);

    /// <summary>The same schedule with another final sparsity (for per-layer targets).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value does not fit this schedule.</exception>
    public abstract PruningSchedule WithFinalSparsity(double finalSparsity);

    /// <summary>The schedule's value identity: its kind and every parameter; checkpoints store and compare it.</summary>
    public abstract ComponentConfig Config { get; }

    /// <summary>The schedule and all its parameters, e.g. <c>OneShot(sparsity=0.9, step=0)</c>.</summary>
    public override string ToString() => Config.ToString();

    internal static void ValidateSparsity(double value, string paramName)
    {
        if (double.IsNaN(value) || value < 0 || value >= 1)
            throw new ArgumentOutOfRangeException(paramName, value, $"{paramName} must be in [0, 1); got {value}.");
    }
}
