using System.Globalization;
using Pruning.Checkpoints;
using Pruning.Criteria;
using Pruning.Grouping;
using Pruning.Masks;
using Pruning.Reporting;
using Pruning.Scheduling;
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
public sealed partial class GradualPruner : IDisposable
{
    private readonly nn.Module _model;
    private readonly PruningOptions _options;
    private readonly ParameterMask[] _masks;
    private readonly PruningSchedule[] _schedules;
    private readonly OptimizerStateHygiene? _hygiene;
    private readonly List<MaskUpdate> _updates = [];
    private readonly bool[] _due;
    private readonly SparsityRange[] _bounds;
    private readonly string[][] _coupled;
    private bool _stripped;

    /// <summary>Creates a pruner for <paramref name="model"/>; nothing is pruned until the schedule's first update step.</summary>
    /// <param name="model">The model whose parameters are pruned in place.</param>
    /// <param name="options">What, how much and when.</param>
    /// <param name="optimizer">The optimizer that trains the model. When given, its per-element state (momentum,
    /// Adam's moments) is zeroed at pruned positions at every mask update, so revived weights restart clean; see
    /// the README. Pass null to leave the optimizer alone.</param>
    /// <exception cref="ArgumentException">The options do not fit the model or the optimizer.</exception>
    public GradualPruner(nn.Module model, PruningOptions options, optim.Optimizer? optimizer = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Schedule is null)
            throw new ArgumentException("PruningOptions.Schedule is required.", nameof(options));
        ArgumentNullException.ThrowIfNull(options.Targets, "options.Targets");
        ArgumentNullException.ThrowIfNull(options.Criterion, "options.Criterion");
        ArgumentNullException.ThrowIfNull(options.ScheduleOverrides, "options.ScheduleOverrides");
        ArgumentNullException.ThrowIfNull(options.Granularity, "options.Granularity");
        ArgumentNullException.ThrowIfNull(options.SparsityOverrides, "options.SparsityOverrides");
        ArgumentNullException.ThrowIfNull(options.SparsityBounds, "options.SparsityBounds");
        if (!Enum.IsDefined(options.Scope))
            throw new ArgumentOutOfRangeException(nameof(options), options.Scope, "PruningOptions.Scope is not a known scope.");

        _model = model;
        _options = options;
        IReadOnlyList<string> names = options.Targets.Resolve(model);
        foreach (string name in options.ScheduleOverrides.Keys)
            if (!names.Contains(name))
                throw new ArgumentException($"ScheduleOverrides names '{name}', which is not a pruned parameter. Pruned: {string.Join(", ", names)}.", nameof(options));
        if (options.Scope == PruningScope.Global && options.ScheduleOverrides.Count > 0)
            throw new ArgumentException("ScheduleOverrides cannot be combined with PruningScope.Global: a global ranking has one schedule.", nameof(options));
        foreach (string name in options.SparsityOverrides.Keys.Concat(options.SparsityBounds.Keys))
            if (!names.Contains(name))
                throw new ArgumentException($"A per-parameter sparsity names '{name}', which is not a pruned parameter. Pruned: {string.Join(", ", names)}.", nameof(options));
        if (options.Scope == PruningScope.Global && options.SparsityOverrides.Count > 0)
            throw new ArgumentException("SparsityOverrides cannot be combined with PruningScope.Global: use SparsityBounds to steer a global ranking.", nameof(options));
        foreach (string name in options.SparsityOverrides.Keys)
            if (options.ScheduleOverrides.ContainsKey(name))
                throw new ArgumentException($"'{name}' has both a schedule override and a sparsity override; give it one.", nameof(options));

        _masks = names.Select(n => new ParameterMask(n, Weight(n).shape)).ToArray();
        _schedules = names.Select(n => options.ScheduleOverrides.GetValueOrDefault(n)
            ?? (options.SparsityOverrides.TryGetValue(n, out double final) ? options.Schedule.WithFinalSparsity(final) : options.Schedule)).ToArray();
        _coupled = names.Select(n => options.Channels?.CoupledWith(n).ToArray() ?? []).ToArray();
        foreach (string coupled in _coupled.SelectMany(c => c))
            if (model.get_parameter(coupled) is null)
                throw new ArgumentException($"PruningOptions.Channels names '{coupled}', which this model does not have: was it analyzed from another model?", nameof(options));
        _bounds = names.Select(n => options.SparsityBounds.TryGetValue(n, out var range) ? range : new SparsityRange(0, 0.999999999)).ToArray();
        _due = new bool[_masks.Length];
        if (options.Scope == PruningScope.Global && !options.Granularity.SupportsGlobal)
            throw new ArgumentException($"{options.Granularity} gives every run of weights its own budget, so it cannot share a global ranking; use PruningScope.LayerWise.", nameof(options));
        for (int i = 0; i < _masks.Length; i++)
        {
            options.Granularity.Validate(_masks[i].Name, _masks[i].Shape);
            if (options.Granularity.MaxSparsity is double max && _schedules[i].FinalSparsity > max + 1e-12)
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                    $"{options.Granularity} prunes at most {max:P1}, but the schedule of '{_masks[i].Name}' ends at {_schedules[i].FinalSparsity:P1}."), nameof(options));
        }
        if (optimizer is not null)
        {
            _hygiene = new OptimizerStateHygiene(optimizer);
            foreach (string name in names)
                if (!_hygiene.Tracks(Weight(name)))
                    throw new ArgumentException($"The optimizer does not train '{name}'. Was it created for another model, or before model.to(device)?", nameof(optimizer));
        }
    }

    /// <summary>The step the next call to <see cref="Step"/> handles (0 for a new pruner).</summary>
    public long CurrentStep { get; private set; }

    /// <summary>The names of the pruned parameters, in model order.</summary>
    public IReadOnlyList<string> ParameterNames => _masks.Select(m => m.Name).ToArray();

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
    /// <exception cref="InvalidOperationException">A weight is NaN or infinite at an update step, or the pruner was stripped.</exception>
    public MaskUpdate? Step()
    {
        ThrowIfStripped();
        MaskUpdate? update = null;
        using (var scope = torch.NewDisposeScope())
        using (torch.no_grad())
        {
            // Plain steps allocate nothing here: fewer collections also means fewer chances to hit TorchSharp's
            // finalizer race on temporary Scalars (see the README).
            bool anyDue = false;
            for (int i = 0; i < _masks.Length; i++)
                anyDue |= _due[i] = _schedules[i].IsUpdateStep(CurrentStep);

            // The current masks first, with the optimizer state of the parameters about to be updated: scores then
            // see the masked model, and weights that new masks revive restart from zero with fresh state.
            for (int i = 0; i < _masks.Length; i++)
                Apply(i, clearState: _due[i]);
            if (_options.Criterion is IAccumulatingCriterion accumulating)
                foreach (ParameterMask mask in _masks)
                    accumulating.Observe(mask.Name, Weight(mask.Name));

            if (anyDue)
            {
                int[] due = Enumerable.Range(0, _masks.Length).Where(i => _due[i]).ToArray();
                update = UpdateMasks(due);
                foreach (int i in due)
                {
                    (_options.Criterion as IAccumulatingCriterion)?.Reset(_masks[i].Name);
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
        ThrowIfStripped();
        return BuildReport();
    }

    /// <summary>The dry run: every update step up to <paramref name="throughStep"/> and the target per parameter.</summary>
    /// <param name="throughStep">The last step to list; required when a schedule never ends.</param>
    public PruningPlan Plan(long? throughStep = null)
    {
        long last = throughStep ?? _schedules.Max(s => s.EndStep);
        if (last == long.MaxValue)
            throw new ArgumentException("A schedule never ends; pass the last training step as throughStep.", nameof(throughStep));
        var steps = _schedules.SelectMany(s => s.UpdateSteps(last).Select(u => u.Step)).Distinct().Order();
        var rows = steps.Select(step => (step, _schedules.Select(s => s.IsUpdateStep(step) ? s.SparsityAt(step) : double.NaN).ToArray())).ToList();
        return new PruningPlan(ParameterNames, rows, _options.Scope == PruningScope.Global);
    }

    /// <summary>
    /// Saves the step, the masks and the schedule to <paramref name="path"/> (a file of its own, next to the model's
    /// checkpoint; the model's state_dict is unchanged). Written to a temporary file first, then moved into place.
    /// </summary>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ThrowIfStripped();
        var masks = _masks.Select((m, i) => new SavedMask(m.Name, _schedules[i].ToString(), m.Shape, m.Target, m.LastUpdateStep,
            m.Current?.ToArray())).ToList();
        byte[]? criterionState = null;
        if (_options.Criterion is IStatefulCriterion stateful)
        {
            using var buffer = new MemoryStream();
            using (var writer = new BinaryWriter(buffer, System.Text.Encoding.UTF8, leaveOpen: true))
                stateful.SaveState(writer);
            criterionState = buffer.ToArray();
        }
        PrunerCheckpoint.Write(path, new SavedPruner(CurrentStep, _options.Scope.ToString(), _options.Criterion.ToString() ?? "",
            _options.Granularity.ToString()!, masks, criterionState));
    }

    /// <summary>
    /// Restores a checkpoint written by <see cref="Save"/> for the same model and options, and re-applies the masks.
    /// Load the model's and the optimizer's own checkpoints first.
    /// </summary>
    /// <exception cref="InvalidDataException">The file is not a valid checkpoint, or does not match this model and these options.</exception>
    public void Load(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ThrowIfStripped();
        SavedPruner saved = PrunerCheckpoint.Read(path);
        InvalidDataException Mismatch(string what) => new($"Pruning checkpoint '{path}' does not match this pruner: {what}.");

        if (saved.Scope != _options.Scope.ToString())
            throw Mismatch($"it was saved with scope {saved.Scope}, this pruner uses {_options.Scope}");
        if (saved.Criterion != (_options.Criterion.ToString() ?? ""))
            throw Mismatch($"it was saved with criterion {saved.Criterion}, this pruner uses {_options.Criterion}");
        if (saved.Granularity != _options.Granularity.ToString())
            throw Mismatch($"it was saved with granularity {saved.Granularity}, this pruner uses {_options.Granularity}");
        var savedNames = saved.Masks.Select(m => m.Name).ToList();
        if (!savedNames.SequenceEqual(_masks.Select(m => m.Name)))
            throw Mismatch($"it holds [{string.Join(", ", savedNames)}], this pruner prunes [{string.Join(", ", _masks.Select(m => m.Name))}]");
        for (int i = 0; i < _masks.Length; i++)
        {
            SavedMask s = saved.Masks[i];
            if (!s.Shape.SequenceEqual(_masks[i].Shape))
                throw Mismatch($"'{s.Name}' has shape [{string.Join(", ", s.Shape)}] there and [{string.Join(", ", _masks[i].Shape)}] here");
            if (s.Schedule != _schedules[i].ToString())
                throw Mismatch($"'{s.Name}' was scheduled {s.Schedule}, this pruner schedules {_schedules[i]}");
        }

        var stateful = _options.Criterion as IStatefulCriterion;
        if ((stateful is null) != (saved.CriterionState is null))
            throw Mismatch(stateful is null ? $"it carries criterion state, but {_options.Criterion} keeps none" : $"it carries no state for {_options.Criterion}");
        if (stateful is not null)
        {
            using var reader = new BinaryReader(new MemoryStream(saved.CriterionState!), System.Text.Encoding.UTF8);
            try
            {
                stateful.LoadState(reader);
            }
            catch (EndOfStreamException)
            {
                throw new InvalidDataException($"Pruning checkpoint '{path}' is invalid: the state of {_options.Criterion} ends early.");
            }
            if (reader.BaseStream.Position != reader.BaseStream.Length)
                throw new InvalidDataException($"Pruning checkpoint '{path}' is invalid: the state of {_options.Criterion} has trailing bytes.");
        }

        for (int i = 0; i < _masks.Length; i++)
        {
            SavedMask s = saved.Masks[i];
            _masks[i].Dispose();
            if (s.Pruned is not null)
                _masks[i].Replace(s.Pruned);
            _masks[i].Target = s.Target;
            _masks[i].LastUpdateStep = s.LastUpdateStep;
        }
        CurrentStep = saved.Step;
        using (var scope = torch.NewDisposeScope())
        using (torch.no_grad())
            for (int i = 0; i < _masks.Length; i++) Apply(i, clearState: true);
    }

    /// <summary>
    /// Bakes the masks into the weights for good and detaches the pruner: the model keeps zeros where pruned and
    /// carries no extra state. The pruner cannot be used afterwards.
    /// </summary>
    /// <returns>The final report.</returns>
    public PruningReport Strip()
    {
        ThrowIfStripped();
        using (var scope = torch.NewDisposeScope())
        using (torch.no_grad())
            for (int i = 0; i < _masks.Length; i++) Apply(i, clearState: true);
        PruningReport report = BuildReport();
        Dispose();
        return report;
    }

    /// <summary>Releases the masks. The model keeps its current weights.</summary>
    public void Dispose()
    {
        foreach (ParameterMask m in _masks) m.Dispose();
        _stripped = true;
    }

    /// <summary>Zeroes the pruned weights of mask <paramref name="index"/>, and their optimizer state if asked.</summary>
    private void Apply(int index, bool clearState)
    {
        ParameterMask mask = _masks[index];
        if (!mask.HasMask) return;
        Parameter weight = Weight(mask.Name);
        OptimizerStateHygiene? hygiene = clearState ? _hygiene : null;
        if (hygiene is not null && !hygiene.Tracks(weight))
        {
            hygiene.Rebuild();
            if (!hygiene.Tracks(weight))
                throw new InvalidOperationException($"The optimizer no longer trains '{mask.Name}' (the model was moved or reloaded into new parameters). Create the pruner again with the new optimizer.");
        }
        mask.Apply(weight, hygiene);
        if (_coupled[index].Length > 0)
            mask.ApplyToRows(_coupled[index].Select(Weight), hygiene);
    }

    private PruningReport BuildReport()
    {
        using var scope = torch.NewDisposeScope();
        var rows = _masks.Select(m =>
        {
            Parameter weight = Weight(m.Name);
            long nonzero = weight.count_nonzero().item<long>();
            return new LayerReport(m.Name, m.Shape, double.IsNaN(m.Target) ? 0 : m.Target, nonzero, m.Count, m.MaskedNonzero(weight));
        }).ToList();
        return new PruningReport(CurrentStep, rows);
    }

    /// <summary>Looks the parameter up by name each time: <c>Module.to(device)</c> replaces Parameter objects.</summary>
    private Parameter Weight(string name) => _model.get_parameter(name)
        ?? throw new InvalidOperationException($"The model no longer has a parameter named '{name}'.");

    private void ThrowIfStripped() => ObjectDisposedException.ThrowIf(_stripped, this);
}
