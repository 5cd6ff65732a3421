using Pruning.Criteria;
using Pruning.Grouping;
using Pruning.Targets;
using static TorchSharp.torch;

namespace Pruning.Analysis;

/// <summary>What a sensitivity scan probes.</summary>
public sealed class SensitivityOptions
{
    /// <summary>The ratios each layer is pruned to, one at a time (default 0.1, 0.2, …, 0.9). Each in [0, 1).</summary>
    public IReadOnlyList<double> Ratios { get; init; } = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

    /// <summary>The layers to probe (default: every prunable weight).</summary>
    public PruningTargets Targets { get; init; } = PruningTargets.Default;

    /// <summary>How elements are scored; must not need gradients.</summary>
    /// <value>The default (null) is <see cref="MagnitudeCriterion"/>.</value>
    public IPruningCriterion? Criterion { get; init; }

    /// <summary>
    /// A mask policy that chooses each probe's mask itself (e.g. <see cref="Reconstruction.ObsPolicy"/> with a
    /// calibration set, which also rewrites the probed layer's kept weights), instead of <see cref="Criterion"/>'s
    /// scores. Give a criterion or a policy, not both.
    /// </summary>
    public MaskPolicy? Policy { get; init; }

    /// <summary>What is pruned together (elements by default; channels, blocks, N:M…).</summary>
    public PruningGranularity Granularity { get; init; } = PruningGranularity.Element;

    /// <summary>The metric's direction.</summary>
    public MetricDirection Direction { get; init; } = MetricDirection.HigherIsBetter;

    /// <summary>The plan a scan probes through: these targets, this granularity, the policy (or the criterion's scores).</summary>
    internal ResolvedPruning Resolve(nn.Module model)
    {
        if (Criterion is not null && Policy is not null)
            throw new ArgumentException($"SensitivityOptions sets both a Criterion ({Criterion.Config}) and a Policy ({Policy.Config}); give one of them.", "options");
        return PruningOptions.ForProbes(model, Targets.Resolve(model), Granularity, null, Criterion, Policy);
    }
}
