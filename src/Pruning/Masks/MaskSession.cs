using Pruning.Criteria;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Masks;

/// <summary>
/// The one place masks are chosen and applied for a resolved plan: the pruner's mask updates and every search's
/// probes (the sensitivity scan, AMC) go through it, so they share the plan's targets, its dependency groups (rows
/// scored together, coupled parameters zeroed with their channel) and its policy (a criterion's scores selected by
/// the engine, or OBS/Wanda/your own). It attaches the policy on creation and detaches it on disposal.
/// </summary>
internal sealed class MaskSession : IDisposable
{
    private readonly nn.Module _model;
    private bool _attached;

    public MaskSession(nn.Module model, ResolvedPruning plan, Func<long> currentStep)
    {
        (_model, Plan) = (model, plan);
        plan.Policy.Attach(model, plan, currentStep);
        _attached = true;
    }

    public ResolvedPruning Plan { get; }

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

    /// <summary>Zeroes what <paramref name="mask"/> prunes in its parameter and, for a channel, in the parameters coupled to it (and their optimizer state if given).</summary>
    public void Apply(ParameterMask mask, OptimizerStateHygiene? hygiene)
    {
        if (!mask.HasMask) return;
        mask.Apply(Weight(mask.Name), hygiene);
        IReadOnlyList<string> coupled = Parameter(mask.Name).Coupled;
        if (coupled.Count > 0) mask.ApplyToRows(coupled.Select(Weight), hygiene);
    }

    /// <summary>
    /// Prunes each parameter of <paramref name="targets"/> to its fraction through the policy (from dense, all at
    /// once, so a sequential policy calibrates each on the pruned layers before it) and applies the masks. Nothing is
    /// kept to undo it: the caller restores the model (<see cref="Probe"/> does).
    /// </summary>
    public void Prune(IReadOnlyDictionary<string, double> targets)
    {
        var parameters = Plan.Parameters.Where(p => targets.ContainsKey(p.Name)).ToList();
        var masks = parameters.Select(p => new ParameterMask(p.Name, p.Shape)).ToList();
        try
        {
            var due = parameters.Select((p, i) => new DueWeight(p.Name, p.Bounds.Clamp(targets[p.Name]), default, masks[i].NextBuffer())).ToList();
            Choose(due, 0);
            using var noGrad = torch.no_grad();
            for (int i = 0; i < masks.Count; i++)
            {
                masks[i].Replace(due[i].Keep);
                Apply(masks[i], null);
            }
        }
        finally
        {
            foreach (ParameterMask m in masks) m.Dispose();
        }
    }

    /// <summary>
    /// A probe of the searches: <see cref="Prune"/>, and disposing the result puts back, bit for bit, every parameter
    /// the probe may have changed (the pruned ones and the ones coupled to them).
    /// </summary>
    public IDisposable Probe(IReadOnlyDictionary<string, double> targets)
    {
        string[] touched = Plan.Parameters.Where(p => targets.ContainsKey(p.Name)).SelectMany(p => p.Coupled.Prepend(p.Name)).Distinct().ToArray();
        var restore = new Restorer(this, touched.ToDictionary(n => n, n => Weight(n).detach().clone()));
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

    public ResolvedParameter Parameter(string name) => Plan.Parameters.FirstOrDefault(p => p.Name == name)
        ?? throw new ArgumentException($"'{name}' is not pruned by this plan.", nameof(name));

    public void Dispose()
    {
        if (!_attached) return;
        Plan.Policy.Detach();
        _attached = false;
    }

    private sealed class Restorer(MaskSession session, Dictionary<string, Tensor> saved) : IDisposable
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
        }
    }
}
