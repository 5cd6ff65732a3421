using Pruning.Checkpoints;
using Pruning.Criteria;
using Pruning.Interop;
using Pruning.Masks;
using Pruning.Reporting;
using Pruning.Selection;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning;

/// <summary>
/// The object a training loop talks to. Call <see cref="Step"/> once per training step, after
/// <c>optimizer.step()</c>: it recomputes masks when the schedule says so and re-applies them every step, in place,
/// so pruned weights are exactly zero after every step.
/// </summary>
/// <example>
/// <code>
/// using var pruner = new GradualPruner(model, new PruningOptions
/// {
///     Schedule = new PolynomialDecaySchedule(0, 0.9, beginStep: 500, endStep: 5000, frequency: 100),
/// }, optimizer);
/// foreach (var (x, y) in batches)
/// {
///     optimizer.zero_grad();
///     loss(model.call(x), y).backward();
///     optimizer.step();
///     pruner.Step();
/// }
/// pruner.Strip();
/// </code>
/// </example>
public sealed class GradualPruner : IDisposable
{
    private readonly ResolvedPruning _plan;
    private readonly MaskSession _session;
    private readonly OptimizerStateHygiene? _hygiene;
    private readonly List<MaskUpdate> _updates = [];
    private bool _disposed;

    /// <summary>Creates a pruner for <paramref name="model"/>; nothing is pruned until the schedule's first update step.</summary>
    /// <param name="model">The model whose parameters are pruned in place.</param>
    /// <param name="options">What, how much and when.</param>
    /// <param name="optimizer">The optimizer that trains the model. When given, its per-element state (momentum,
    /// Adam's moments) is zeroed at pruned positions at every mask update, so revived weights restart clean; see
    /// the README. Pass null to leave the optimizer alone.</param>
    /// <exception cref="ArgumentException">The options do not fit the model or the optimizer.</exception>
    public GradualPruner(nn.Module model, PruningOptions options, optim.Optimizer? optimizer = null)
    {
        TorchHealth.EnsureOnFirstUse();
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        _plan = options.Resolve(model);
        _session = new MaskSession(model, _plan, () => CurrentStep);
        if (optimizer is not null)
        {
            _hygiene = new OptimizerStateHygiene(optimizer);
            foreach (ResolvedParameter p in _plan.Parameters)
                if (!_hygiene.Tracks(_session.Weight(p.Name)))
                {
                    _session.Dispose();
                    throw new ArgumentException($"The optimizer does not train '{p.Name}'. Was it created for another model, or before model.to(device)?", nameof(optimizer));
                }
        }
    }

    /// <summary>The step the next call to <see cref="Step"/> handles (0 for a new pruner).</summary>
    public long CurrentStep { get; private set; }

    /// <summary>The names of the pruned parameters, in model order.</summary>
    public IReadOnlyList<string> ParameterNames => _plan.Parameters.Select(p => p.Name).ToArray();

    /// <summary>Every mask update so far, with its churn.</summary>
    public IReadOnlyList<MaskUpdate> Updates => _updates;

    /// <summary>Raised after each mask update.</summary>
    public event EventHandler<MaskUpdate>? MaskUpdated;

    /// <summary>
    /// Handles one training step: zeroes every pruned weight in place; at an update step of the schedule it first
    /// recomputes the masks and clears the optimizer state of the positions pruned before or after the update.
    /// Then it advances <see cref="CurrentStep"/>.
    /// </summary>
    /// <returns>The mask update made at this step, or null.</returns>
    /// <exception cref="InvalidOperationException">A weight is NaN or infinite at an update step.</exception>
    /// <exception cref="ObjectDisposedException">The pruner was stripped or disposed.</exception>
    public MaskUpdate? Step()
    {
        ThrowIfDisposed();
        MaskUpdate? update = null;
        using (var scope = torch.NewDisposeScope())
        using (torch.no_grad())
        {
            // Plain steps allocate nothing here: fewer collections also means fewer chances to hit TorchSharp's
            // finalizer race on temporary Scalars (see the README).
            List<int>? due = null;
            for (int i = 0; i < _plan.Parameters.Count; i++)
                if (_plan.Parameters[i].Schedule.IsUpdateStep(CurrentStep)) (due ??= []).Add(i);

            // The current masks first, with the optimizer state of the parameters about to be updated: scores then
            // see the masked model, and weights that new masks revive restart from zero with fresh state.
            for (int i = 0; i < _plan.Parameters.Count; i++)
                Apply(i, clearState: due?.Contains(i) == true);
            foreach (ResolvedParameter p in _plan.Parameters)
                _plan.Policy.Observe(p, _session.Weight);

            if (due is not null)
            {
                update = new MaskUpdate(CurrentStep, _session.Update(due, p => p.Schedule.SparsityAt(CurrentStep), CurrentStep));
                foreach (int i in due)
                {
                    _plan.Policy.Reset(_plan.Parameters[i]);
                    Apply(i, clearState: true);
                }
            }
        }
        CurrentStep++;
        if (update is not null)
        {
            _updates.Add(update);
            MaskUpdated?.Invoke(this, update);
        }
        return update;
    }

    /// <summary>The sparsity measured from the weights, per parameter and in total.</summary>
    public PruningReport Report()
    {
        ThrowIfDisposed();
        return BuildReport();
    }

    /// <summary>
    /// A copy of one parameter's mask, like PyTorch's <c>weight_mask</c>: 1 where the weight is kept, 0 where it is
    /// pruned (all ones before the first update), in the parameter's dtype and on its device. The caller disposes it.
    /// </summary>
    /// <param name="parameterName">A name from <see cref="ParameterNames"/>.</param>
    /// <exception cref="ArgumentException">The parameter is not pruned by this pruner.</exception>
    public Tensor Mask(string parameterName)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(parameterName);
        ParameterMask mask = _session.Mask(parameterName);
        Parameter weight = _session.Weight(parameterName);
        return mask.KeepTensor(weight.dtype, weight.device);
    }

    /// <summary>The dry run: every update step up to <paramref name="throughStep"/> and the target per parameter.</summary>
    /// <param name="throughStep">The last step to list; required when a schedule never ends.</param>
    public PruningPlan Plan(long? throughStep = null)
    {
        var schedules = _plan.Parameters.Select(p => p.Schedule).ToArray();
        long last = throughStep ?? schedules.Max(s => s.EndStep);
        if (last == long.MaxValue)
            throw new ArgumentException("A schedule never ends; pass the last training step as throughStep.", nameof(throughStep));
        var steps = schedules.SelectMany(s => s.UpdateSteps(last).Select(u => u.Step)).Distinct().Order();
        var rows = steps.Select(step => (step, schedules.Select(s => s.IsUpdateStep(step) ? s.SparsityAt(step) : double.NaN).ToArray())).ToList();
        return new PruningPlan(ParameterNames, rows, _plan.Scope == PruningScope.Global);
    }

    /// <summary>
    /// Saves the step, the masks, the configuration and the criterion's state to <paramref name="path"/> (a file of its
    /// own, next to the model's checkpoint; the model's state_dict is unchanged). Written to a temporary file first,
    /// then moved into place.
    /// </summary>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ThrowIfDisposed();
        PrunerCheckpoint.Write(path, _session.Snapshot(CurrentStep));
    }

    /// <summary>
    /// Restores a checkpoint written by <see cref="Save"/> for the same model and options, and re-applies the masks.
    /// Load the model's and the optimizer's own checkpoints first. On any failure the pruner is left as it was.
    /// </summary>
    /// <exception cref="FileNotFoundException">There is no such file.</exception>
    /// <exception cref="InvalidDataException">The file is not a valid checkpoint, or does not match this model and these options.</exception>
    public void Load(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ThrowIfDisposed();
        SavedPruner saved = PrunerCheckpoint.Read(path, _session.MaxCheckpointBytes);
        _session.Restore(saved, path);
        CurrentStep = saved.Step;
        using (var scope = torch.NewDisposeScope())
        using (torch.no_grad())
            for (int i = 0; i < _plan.Parameters.Count; i++) Apply(i, clearState: true);
    }

    /// <summary>
    /// Bakes the masks into the weights for good and detaches the pruner: the model keeps zeros where pruned and
    /// carries no extra state. The pruner cannot be used afterwards.
    /// </summary>
    /// <returns>The final report.</returns>
    public PruningReport Strip()
    {
        ThrowIfDisposed();
        using (var scope = torch.NewDisposeScope())
        using (torch.no_grad())
            for (int i = 0; i < _plan.Parameters.Count; i++) Apply(i, clearState: true);
        PruningReport report = BuildReport();
        Dispose();
        return report;
    }

    /// <summary>Releases the masks. The model keeps its current weights.</summary>
    public void Dispose()
    {
        _session.Dispose();
        _disposed = true;
    }

    /// <summary>Zeroes the pruned weights of mask <paramref name="index"/>, and their optimizer state if asked.</summary>
    private void Apply(int index, bool clearState)
    {
        ParameterMask mask = _session.Masks[index];
        if (!mask.HasMask) return;
        Parameter weight = _session.Weight(mask.Name);
        OptimizerStateHygiene? hygiene = clearState ? _hygiene : null;
        if (hygiene is not null && !hygiene.Tracks(weight))
        {
            hygiene.Rebuild();
            if (!hygiene.Tracks(weight))
                throw new InvalidOperationException($"The optimizer no longer trains '{mask.Name}' (the model was moved or reloaded into new parameters). Create the pruner again with the new optimizer.");
        }
        _session.Apply(index, hygiene);
    }

    private PruningReport BuildReport()
    {
        using var scope = torch.NewDisposeScope();
        var rows = _session.Masks.Select(m =>
        {
            Parameter weight = _session.Weight(m.Name);
            long nonzero = weight.count_nonzero().item<long>();
            return new LayerReport(m.Name, m.Shape, double.IsNaN(m.Target) ? 0 : m.Target, nonzero, m.Count, m.MaskedNonzero(weight));
        }).ToList();
        return new PruningReport(CurrentStep, rows);
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
}
