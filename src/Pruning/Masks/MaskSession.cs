using System.Text;
using Pruning.Checkpoints;
using Pruning.Criteria;
using Pruning.Reporting;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Masks;

/// <summary>
/// The one place masks live, are chosen and are applied for a resolved plan: the pruner's mask updates and every
/// search's probes (the sensitivity scan, NetAdapt, AMC) go through it, so they share the plan's targets, its
/// dependency groups (rows scored together, coupled parameters zeroed with their channel) and its policy (a
/// criterion's scores selected by the engine, or OBS/Wanda/your own). It holds one mask per planned parameter, takes
/// them and the policy's state into and out of the pruner checkpoint, attaches the policy on creation and detaches it
/// (and releases the masks) on disposal.
/// </summary>
internal sealed class MaskSession : IDisposable
{
    private readonly nn.Module _model;
    private readonly ParameterMask[] _masks;
    private bool _disposed;

    public MaskSession(nn.Module model, ResolvedPruning plan, Func<long> currentStep)
    {
        (_model, Plan) = (model, plan);
        _masks = plan.Parameters.Select(p => new ParameterMask(p.Name, p.Shape)).ToArray();
        plan.Policy.Attach(model, plan, currentStep);
    }

    public ResolvedPruning Plan { get; }

    /// <summary>The current masks, one per planned parameter, in plan order (all keep everything until a first update).</summary>
    public IReadOnlyList<ParameterMask> Masks => _masks;

    /// <summary>The current mask of <paramref name="name"/>.</summary>
    public ParameterMask Mask(string name) => _masks[IndexOf(name)];

    /// <summary>Looks the parameter up by name each time: <c>Module.to(device)</c> replaces Parameter objects.</summary>
    public Parameter Weight(string name) => _model.get_parameter(name)
        ?? throw new InvalidOperationException($"The model no longer has a parameter named '{name}'.");

    /// <summary>
    /// Lets the policy choose the masks of <paramref name="due"/> at <paramref name="step"/> (and perhaps rewrite their
    /// weights), and checks what it chose: every mask keeps an element and every reached target is in [0, 1).
    /// </summary>
    public void Choose(IReadOnlyList<DueWeight> due, long step)
    {
        using (torch.no_grad())
            Plan.Policy.Choose(new MaskPolicyContext(_model, step, Plan.Granularity), due);
        foreach (DueWeight chosen in due)
        {
            if (Array.IndexOf(chosen.Keep, true) < 0)
                throw new InvalidOperationException($"{Plan.Policy} pruned every element of '{chosen.Name}' {CriterionScores.AtStep(step)}; a mask must keep at least one.");
            if (!(chosen.Target >= 0 && chosen.Target < 1))
                throw new InvalidOperationException($"{Plan.Policy} reported target {chosen.Target} for '{chosen.Name}'; a target is in [0, 1).");
        }
    }

    /// <summary>
    /// Replaces the masks of the planned parameters <paramref name="due"/> (indices into the plan) with the policy's
    /// choice at <paramref name="step"/>, each aiming at <paramref name="target"/> on top of its current mask (already
    /// pruned elements go first), and returns each one's churn. The weights are not touched: <see cref="Apply(int, OptimizerStateHygiene?)"/> does that.
    /// </summary>
    public IReadOnlyList<LayerMaskUpdate> Update(IReadOnlyList<int> due, Func<ResolvedParameter, double> target, long step)
    {
        var weights = due.Select(i =>
        {
            ResolvedParameter p = Plan.Parameters[i];
            return new DueWeight(p.Name, p.Bounds.Clamp(target(p)), _masks[i].Current, _masks[i].NextBuffer());
        }).ToList();
        Choose(weights, step);
        var changes = new List<LayerMaskUpdate>(due.Count);
        for (int j = 0; j < due.Count; j++)
        {
            ParameterMask mask = _masks[due[j]];
            DueWeight chosen = weights[j];
            var (newly, revived) = mask.Replace(chosen.Keep);
            mask.Target = chosen.Target;
            mask.LastUpdateStep = step;
            changes.Add(new LayerMaskUpdate(mask.Name, chosen.Target, mask.PrunedCount, mask.Count, newly, revived));
        }
        return changes;
    }

    /// <summary>Zeroes what the current mask of planned parameter <paramref name="index"/> prunes (see <see cref="Apply(ParameterMask, OptimizerStateHygiene?)"/>).</summary>
    public void Apply(int index, OptimizerStateHygiene? hygiene) => Apply(_masks[index], hygiene);

    /// <summary>Zeroes what <paramref name="mask"/> prunes in its parameter and, for a channel, in the parameters coupled to it (and their optimizer state if given).</summary>
    public void Apply(ParameterMask mask, OptimizerStateHygiene? hygiene)
    {
        if (!mask.HasMask) return;
        mask.Apply(Weight(mask.Name), hygiene);
        IReadOnlyList<string> coupled = Parameter(mask.Name).Coupled;
        if (coupled.Count > 0) mask.ApplyToRows(coupled.Select(Weight), hygiene);
    }

    /// <summary>
    /// Prunes each parameter of <paramref name="targets"/> to its fraction through the policy, from dense (its mask is
    /// forgotten first) and all at once, so a sequential policy calibrates each on the pruned layers before it, and
    /// applies the masks. Nothing is kept to undo it: the caller restores the model (<see cref="Probe"/> does).
    /// </summary>
    public void Prune(IReadOnlyDictionary<string, double> targets)
    {
        int[] due = Enumerable.Range(0, _masks.Length).Where(i => targets.ContainsKey(_masks[i].Name)).ToArray();
        foreach (int i in due) _masks[i].Dispose();
        Update(due, p => targets[p.Name], 0);
        using var noGrad = torch.no_grad();
        foreach (int i in due) Apply(i, null);
    }

    /// <summary>
    /// A probe of the searches: <see cref="Prune"/>, and disposing the result puts back, bit for bit, every parameter
    /// the probe may have changed (the pruned ones and the ones coupled to them) and forgets the probe's masks.
    /// </summary>
    public IDisposable Probe(IReadOnlyDictionary<string, double> targets)
    {
        var probed = _masks.Where(m => targets.ContainsKey(m.Name)).ToArray();
        string[] touched = probed.SelectMany(m => Parameter(m.Name).Coupled.Prepend(m.Name)).Distinct().ToArray();
        var restore = new Restorer(this, touched.ToDictionary(n => n, n => Weight(n).detach().clone()), probed);
        try
        {
            Prune(targets);
            return restore;
        }
        catch
        {
            restore.Dispose();
            throw;
        }
    }

    public ResolvedParameter Parameter(string name) => Plan.Parameters[IndexOf(name)];

    /// <summary>The checkpoint of the masks and the policy's state at <paramref name="step"/>.</summary>
    public SavedPruner Snapshot(long step)
    {
        var masks = _masks.Select((m, i) => new SavedMask(m.Name, Plan.Parameters[i].Schedule.Config, m.Shape, m.Target, m.LastUpdateStep,
            m.HasMask ? m.Current.ToArray() : null)).ToList();
        byte[]? state = null;
        if (Plan.Policy.State is { } stateful)
        {
            using var buffer = new MemoryStream();
            using (var writer = new BinaryWriter(buffer, Encoding.UTF8, leaveOpen: true))
                stateful.SaveState(writer);
            state = buffer.ToArray();
        }
        return new SavedPruner(step, Plan.Scope, Plan.Policy.Config, Plan.Granularity.Config, masks, state);
    }

    /// <summary>The largest checkpoint this session can have written: bounds what <see cref="Restore"/> reads.</summary>
    public long MaxCheckpointBytes =>
        PrunerCheckpoint.MaxBytes(Plan.Parameters.Select(p => p.Count + p.ScoredCount)) + Plan.Policy.MaxStateBytes(Plan.Parameters.Select(p => p.Shape));

    /// <summary>
    /// Takes the masks and the policy's state from <paramref name="saved"/> (read from <paramref name="path"/>) after
    /// checking that they belong to this plan; on any failure nothing changes. The weights are not touched.
    /// </summary>
    public void Restore(SavedPruner saved, string path)
    {
        PrunerCheckpoint.Verify(saved, Plan, path);
        IPrunerState? stateful = Plan.Policy.State;
        if ((stateful is null) != (saved.CriterionState is null))
            throw new InvalidDataException($"Pruning checkpoint '{path}' does not match this pruner: " +
                (stateful is null ? $"it carries criterion state, but {Plan.Policy} keeps none." : $"it carries no state for {Plan.Policy}."));
        if (stateful is not null)
            LoadState(stateful, saved.CriterionState!, path);
        for (int i = 0; i < _masks.Length; i++)
        {
            SavedMask s = saved.Masks[i];
            _masks[i].Dispose();
            if (s.Keep is not null)
                _masks[i].Replace(s.Keep);
            _masks[i].Target = s.Target;
            _masks[i].LastUpdateStep = s.LastUpdateStep;
        }
    }

    private void LoadState(IPrunerState stateful, byte[] state, string path)
    {
        using var reader = new BinaryReader(new MemoryStream(state), Encoding.UTF8);
        var parameters = _masks.ToDictionary(m => m.Name, m => (Tensor)Weight(m.Name));
        try
        {
            stateful.LoadState(reader, parameters);
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"Pruning checkpoint '{path}' is invalid: the state of {Plan.Policy} ends early.");
        }
        catch (FormatException e)
        {
            throw new InvalidDataException($"Pruning checkpoint '{path}' is invalid: the state of {Plan.Policy} is malformed ({e.Message}).", e);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"Pruning checkpoint '{path}' is invalid: {e.Message}", e);
        }
        if (reader.BaseStream.Position != reader.BaseStream.Length)
            throw new InvalidDataException($"Pruning checkpoint '{path}' is invalid: the state of {Plan.Policy} has trailing bytes.");
    }

    /// <summary>Detaches the policy and releases the masks. The model keeps its current weights.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        Plan.Policy.Detach();
        foreach (ParameterMask m in _masks) m.Dispose();
        _disposed = true;
    }

    private int IndexOf(string name)
    {
        for (int i = 0; i < _masks.Length; i++)
            if (_masks[i].Name == name) return i;
        throw new ArgumentException($"'{name}' is not pruned by this plan; pruned: {string.Join(", ", _masks.Select(m => m.Name))}.", nameof(name));
    }

    private sealed class Restorer(MaskSession session, Dictionary<string, Tensor> saved, ParameterMask[] probed) : IDisposable
    {
        public void Dispose()
        {
            using (torch.no_grad())
                foreach (var (name, value) in saved)
                {
                    session.Weight(name).copy_(value);
                    value.Dispose();
                }
            saved.Clear();
            foreach (ParameterMask m in probed) m.Dispose();
        }
    }
}
