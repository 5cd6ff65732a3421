using Pruning.Configuration;
using Pruning.Grouping;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Criteria;

/// <summary>
/// How a mask update chooses masks: the second extension point beside the scorer (<see cref="IPruningCriterion"/>).
/// The pruner hands a policy the weights whose update is due, each with its target sparsity (bounds applied), its
/// current mask and an array for the new one; the policy fills every array and may rewrite the weights (the pruner
/// zeroes the pruned entries afterwards and records the churn).
/// </summary>
/// <remarks>
/// Without a policy, <see cref="GradualPruner"/> scores each weight with <see cref="PruningOptions.Criterion"/> and
/// lets the selection engine choose: exact counts, layer-wise or global, every granularity, dependency groups scored
/// together. <see cref="Reconstruction.ObsPolicy"/> (OBS/SparseGPT) and <see cref="Reconstruction.WandaPolicy"/> are
/// policies: they choose from calibration inputs and reconstruct. A policy that keeps state across updates implements
/// <see cref="IPrunerState"/> as well, and its state goes into the pruner's checkpoint.
/// </remarks>
public abstract class MaskPolicy
{
    /// <summary>The policy's value identity, stored in checkpoints (kind and settings).</summary>
    public abstract ComponentConfig Config { get; }

    /// <summary>
    /// Chooses the mask of every weight in <paramref name="due"/> into its <see cref="DueWeight.Keep"/> (true = kept),
    /// pruning its <see cref="DueWeight.Target"/> fraction at <see cref="MaskPolicyContext.Granularity"/>, and may
    /// update the weights in place. Called under <c>torch.no_grad()</c>; the weights hold the current masks.
    /// </summary>
    public abstract void Choose(MaskPolicyContext context, IReadOnlyList<DueWeight> due);

    /// <summary>Attaches to a pruner's model and plan before its first step (hooks, checks); refuses what it cannot serve.</summary>
    /// <exception cref="ArgumentException">The plan does not suit the policy (named in the message).</exception>
    internal virtual void Attach(nn.Module model, ResolvedPruning plan, Func<long> currentStep) { }

    /// <summary>Releases what <see cref="Attach"/> took; the policy can serve another pruner afterwards.</summary>
    internal virtual void Detach() { }

    /// <summary>What the pruner's checkpoint saves for this policy, or null.</summary>
    internal virtual IPrunerState? State => this as IPrunerState;

    /// <summary>The most bytes <see cref="State"/> writes for weights of these shapes: bounds what a checkpoint may hold.</summary>
    internal virtual long MaxStateBytes(IEnumerable<long[]> shapes) => 0;

    /// <summary>Called at every step with the weights of <paramref name="parameter"/> (and its group) after re-masking.</summary>
    internal virtual void Observe(ResolvedParameter parameter, Func<string, Parameter> weight) { }

    /// <summary>Called after each mask update of <paramref name="parameter"/>.</summary>
    internal virtual void Reset(ResolvedParameter parameter) { }

    /// <inheritdoc />
    public override string ToString() => Config.ToString();
}

/// <summary>What a <see cref="MaskPolicy"/> works with at one mask update.</summary>
/// <param name="Model">The pruned model (its weights by name through <c>get_parameter</c>).</param>
/// <param name="Step">The training step of the update.</param>
/// <param name="Granularity">The groups masks are made of (<see cref="PruningOptions.Granularity"/>).</param>
public sealed record MaskPolicyContext(nn.Module Model, long Step, PruningGranularity Granularity);

/// <summary>One weight a mask update is due for.</summary>
/// <param name="name">The parameter's name (e.g. <c>fc1.weight</c>).</param>
/// <param name="target">The fraction to prune, its bounds applied. A policy that reaches another fraction (a global ranking) sets it here.</param>
/// <param name="previousKeep">The current mask, one flag per element (true = kept); empty before the first update.</param>
/// <param name="keep">The array the new mask goes to, one flag per element of the weight.</param>
public sealed class DueWeight(string name, double target, ReadOnlyMemory<bool> previousKeep, bool[] keep)
{
    /// <summary>The parameter's name.</summary>
    public string Name { get; } = name;

    /// <summary>The fraction to prune; a policy that reaches another one records it here.</summary>
    public double Target { get; set; } = target;

    /// <summary>The current mask (true = kept); empty before the first update.</summary>
    public ReadOnlyMemory<bool> PreviousKeep { get; } = previousKeep;

    /// <summary>Where the new mask goes (true = kept).</summary>
    public bool[] Keep { get; } = keep;
}
