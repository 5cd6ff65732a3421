using Pruning.Configuration;

namespace Pruning.Scheduling;

/// <summary>
/// Iterative pruning with fine-tuning (Han et al. 2015; MIT 6.5940 lecture 6): the masks jump to each stage's
/// sparsity at the start of the stage, and the network fine-tunes at that sparsity for <see cref="StepsPerStage"/>
/// steps before the next cut. Stage i starts at <c>beginStep + i·stepsPerStage</c>; the last stage's sparsity is
/// kept afterwards. Like every schedule it is a pure function of the step, so checkpoints resume it exactly.
/// </summary>
public sealed class IterativeSchedule : PruningSchedule
{
    private readonly double[] _stages;

    /// <summary>Creates the schedule.</summary>
    /// <param name="stages">Sparsities, strictly increasing, each in [0, 1), e.g. 0.3, 0.5, 0.7, 0.9.</param>
    /// <param name="beginStep">The step at which the first stage is cut (≥ 0).</param>
    /// <param name="stepsPerStage">Fine-tuning steps between cuts (&gt; 0).</param>
    public IterativeSchedule(IReadOnlyList<double> stages, long beginStep, long stepsPerStage)
    {
        ArgumentNullException.ThrowIfNull(stages);
        if (stages.Count == 0) throw new ArgumentException("An iterative schedule needs at least one stage.", nameof(stages));
        for (int i = 0; i < stages.Count; i++)
        {
            ValidateSparsity(stages[i], nameof(stages));
            if (i > 0 && stages[i] <= stages[i - 1])
                throw new ArgumentException($"Stages must increase strictly; stage {i} ({stages[i]}) is not above stage {i - 1} ({stages[i - 1]}).", nameof(stages));
        }
        ArgumentOutOfRangeException.ThrowIfNegative(beginStep);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(stepsPerStage);
        if ((long.MaxValue - beginStep) / stepsPerStage < stages.Count)
            throw new ArgumentOutOfRangeException(nameof(stepsPerStage), stepsPerStage, "The schedule would run past the largest step.");
        _stages = stages.ToArray();
        BeginStep = beginStep;
        StepsPerStage = stepsPerStage;
    }

    /// <summary>The stage sparsities.</summary>
    public IReadOnlyList<double> Stages => _stages;

    /// <summary>Fine-tuning steps per stage.</summary>
    public long StepsPerStage { get; }

    /// <inheritdoc />
    public override long BeginStep { get; }

    /// <inheritdoc />
    public override long EndStep => BeginStep + (_stages.Length - 1) * StepsPerStage;

    /// <inheritdoc />
    public override double FinalSparsity => _stages[^1];

    /// <inheritdoc />
    public override bool IsUpdateStep(long step) => step >= BeginStep && step <= EndStep && (step - BeginStep) % StepsPerStage == 0;

    /// <inheritdoc />
    public override double SparsityAt(long step) =>
        step < BeginStep ? 0 : _stages[(int)Math.Min(_stages.Length - 1, (step - BeginStep) / StepsPerStage)];

    /// <inheritdoc />
    protected override long NextUpdateAfter(long step)
    {
        if (step < BeginStep) return BeginStep;
        long next = BeginStep + ((step - BeginStep) / StepsPerStage + 1) * StepsPerStage;
        return next > EndStep ? long.MaxValue : next;
    }

    /// <summary>The same stages scaled so that the last one is <paramref name="finalSparsity"/> (for per-layer targets).</summary>
    public override PruningSchedule WithFinalSparsity(double finalSparsity)
    {
        ValidateSparsity(finalSparsity, nameof(finalSparsity));
        if (FinalSparsity == 0) return new IterativeSchedule([finalSparsity], BeginStep, StepsPerStage);
        double scale = finalSparsity / FinalSparsity;
        var scaled = _stages.Select(s => s * scale).ToArray();
        // Scaling to 0 collapses the stages; keep one stage then.
        return scaled[^1] == 0 ? new IterativeSchedule([0.0], BeginStep, StepsPerStage) : new IterativeSchedule(Distinct(scaled), BeginStep, StepsPerStage);
    }

    private static double[] Distinct(double[] stages)
    {
        var result = new List<double>();
        foreach (double s in stages) if (result.Count == 0 || s > result[^1]) result.Add(s);
        return result.ToArray();
    }

    /// <inheritdoc />
    public override ComponentConfig Config => new("Iterative", ("stages", _stages), ("begin", BeginStep), ("stepsPerStage", StepsPerStage));
}
