using Pruning.Configuration;
using Pruning.Interop;
using Pruning.Selection;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Criteria;

/// <summary>
/// The default mask policy: each due weight scored by a criterion (a dependency group's rows scored together), the
/// selection engine choosing exact counts in the plan's scope, with each parameter's schedule and bounds. Its
/// identity in checkpoints is the criterion's, and the criterion's state is the policy's.
/// </summary>
internal sealed class ScoredSelection(IPruningCriterion scorer) : MaskPolicy
{
    private ResolvedPruning? _plan;

    public IPruningCriterion Scorer { get; } = scorer;

    public override ComponentConfig Config => Scorer.Config;

    internal override IPrunerState? State => Scorer as IPrunerState;

    internal override void Attach(nn.Module model, ResolvedPruning plan, Func<long> currentStep) => _plan = plan;

    internal override void Detach() => _plan = null;

    internal override void Observe(ResolvedParameter parameter, Func<string, Parameter> weight)
    {
        if (Scorer is IAccumulatingCriterion accumulating)
            foreach (string name in parameter.ScoredWith.Prepend(parameter.Name)) accumulating.Observe(name, weight(name));
    }

    internal override void Reset(ResolvedParameter parameter)
    {
        if (Scorer is IAccumulatingCriterion accumulating)
            foreach (string name in parameter.ScoredWith.Prepend(parameter.Name)) accumulating.Reset(name);
    }

    public override void Choose(MaskPolicyContext context, IReadOnlyList<DueWeight> due)
    {
        ResolvedPruning plan = _plan ?? throw new InvalidOperationException("The scored selection is not attached to a pruner.");
        // The scores' tensors live until the engine has read them, then go.
        using var scope = torch.NewDisposeScope();
        string when = CriterionScores.AtStep(context.Step);
        Parameter Weight(string name) => context.Model.get_parameter(name) ?? throw new InvalidOperationException($"The model no longer has a parameter named '{name}'.");
        // Scores stay in their (CPU, float32, contiguous) tensors; the engine reads their storage in place.
        var layers = due.Select(d =>
        {
            ResolvedParameter p = plan.Parameters.First(q => q.Name == d.Name);
            // A dependency group's channels carry one score each, from all its layers; a lone weight, one per element.
            float[]? groups = p.ScoredWith.Count == 0 ? null
                : CriterionScores.Group(Scorer, p.Name, Weight(p.Name), p.ScoredWith.Select(m => (m, (Tensor)Weight(m))).ToList(), plan.Granularity.Norm, when);
            ReadOnlyMemory<float> scores = groups is null ? TensorMemory.Of(CriterionScores.Compute(Scorer, p.Name, Weight(p.Name), when)) : default;
            // Layer-wise, each weight's own target (its bounds already applied); a global ranking shares the
            // schedule's target and keeps each weight within its bounds.
            bool global = plan.Scope == PruningScope.Global;
            return new SelectionLayer(p.Name, scores, p.Shape)
            {
                GroupScores = groups,
                Sparsity = global ? p.Schedule.SparsityAt(context.Step) : d.Target,
                Bounds = global ? p.Bounds : SparsityRange.Unbounded,
                PreviousKeep = d.PreviousKeep,
            };
        }).ToArray();
        double[] targets = MaskSelector.SelectInto(layers, plan.Granularity, plan.Scope, due.Select(d => d.Keep).ToArray());
        for (int i = 0; i < due.Count; i++) due[i].Target = targets[i];
    }
}
