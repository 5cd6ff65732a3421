using System.Globalization;
using Pruning.Criteria;
using Pruning.Grouping;
using Pruning.Reconstruction;
using Pruning.Scheduling;
using Pruning.Selection;
using Pruning.Structure;
using Pruning.Targets;
using static TorchSharp.torch;

namespace Pruning;

/// <summary>What to prune, how much and when. Validated once, into an immutable plan, when a <see cref="GradualPruner"/> is created.</summary>
public sealed class PruningOptions
{
    /// <summary>When masks are recomputed and to which sparsity (e.g. <see cref="PolynomialDecaySchedule"/>).</summary>
    public required PruningSchedule Schedule { get; init; }

    /// <summary>Which parameters are pruned.</summary>
    /// <value>The default is <see cref="PruningTargets.Default"/>: every weight with two or more dimensions.</value>
    public PruningTargets Targets { get; init; } = PruningTargets.Default;

    private readonly IPruningCriterion? _criterion;

    /// <summary>How important each weight is: the scores the selection engine chooses masks from.</summary>
    /// <value>The default is <see cref="MagnitudeCriterion"/>.</value>
    public IPruningCriterion Criterion
    {
        get => _criterion ?? DefaultCriterion;
        init => _criterion = value ?? throw new ArgumentNullException(nameof(Criterion), "PruningOptions.Criterion is null.");
    }

    /// <summary>
    /// A mask policy that chooses the masks itself, instead of <see cref="Criterion"/>'s scores and the selection
    /// engine: <see cref="ObsPolicy"/> (OBS/SparseGPT), <see cref="WandaPolicy"/>, or your own <see cref="MaskPolicy"/>.
    /// Give a criterion or a policy, not both.
    /// </summary>
    /// <value>The default is none: the criterion's scores, selected by the engine.</value>
    public MaskPolicy? Policy { get; init; }

    private static readonly MagnitudeCriterion DefaultCriterion = new();

    /// <summary>Which elements are pruned together: single weights, output channels, kernels, blocks or N:M runs.</summary>
    /// <value>The default is <see cref="PruningGranularity.Element"/> (unstructured).</value>
    public PruningGranularity Granularity { get; init; } = PruningGranularity.Element;

    /// <summary>
    /// The channel structure of the model, from <see cref="ChannelGraph.Trace"/> (any model: a Sequential chain, residual
    /// adds, concatenations, your own Module classes). When
    /// set, a row of a pruned weight that is pruned entirely is a dead channel: the producer's bias, the BatchNorms
    /// and depthwise filters on the channel and, in a dependency group, the other layers writing it are zeroed with
    /// it, so the channel outputs exactly zero and can be removed for real. A group's channels are scored together
    /// (each member's row norms, divided by their mean, averaged). Use it with <see cref="PruningGranularity.OutputChannels"/>.
    /// </summary>
    /// <value>The default is none.</value>
    public ChannelGraph? Channels { get; init; }

    /// <summary>Whether each tensor reaches the target on its own or the targets share one ranking.</summary>
    /// <value>The default is <see cref="PruningScope.LayerWise"/>.</value>
    public PruningScope Scope { get; init; } = PruningScope.LayerWise;

    /// <summary>
    /// Per-parameter settings, keyed by full parameter name (e.g. <c>fc3.weight</c>): a schedule of its own, a final
    /// sparsity of its own on <see cref="Schedule"/>, and bounds. See <see cref="ParameterOverride"/>.
    /// </summary>
    /// <value>The default is none.</value>
    public IReadOnlyDictionary<string, ParameterOverride> Overrides { get; init; } = new Dictionary<string, ParameterOverride>();

    /// <summary>
    /// The plan a search probes through (the sensitivity scan, AMC, NetAdapt): exactly <paramref name="weights"/>, at
    /// <paramref name="granularity"/>, with <paramref name="channels"/>' groups, chosen by <paramref name="policy"/> or
    /// by <paramref name="criterion"/>'s scores (magnitude when both are null). Targets come with each probe.
    /// </summary>
    internal static ResolvedPruning ForProbes(nn.Module model, IEnumerable<string> weights, PruningGranularity granularity, ChannelGraph? channels = null,
        IPruningCriterion? criterion = null, MaskPolicy? policy = null)
    {
        var targets = PruningTargets.Default.Include([.. weights]);
        var schedule = new OneShotSchedule(0);
        var options = policy is not null
            ? new PruningOptions { Schedule = schedule, Targets = targets, Granularity = granularity, Channels = channels, Policy = policy }
            : new PruningOptions { Schedule = schedule, Targets = targets, Granularity = granularity, Channels = channels, Criterion = criterion ?? DefaultCriterion };
        return options.Resolve(model);
    }

    /// <summary>Checks the options against <paramref name="model"/> and resolves them into the plan a pruner follows.</summary>
    /// <exception cref="ArgumentException">The options do not fit the model; the message names the option and the parameter.</exception>
    internal ResolvedPruning Resolve(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (Schedule is null) throw new ArgumentException("PruningOptions.Schedule is required.", "options");
        if (Targets is null) throw new ArgumentException("PruningOptions.Targets is null.", "options");
        if (_criterion is not null && Policy is not null)
            throw new ArgumentException($"PruningOptions sets both a Criterion ({_criterion.Config}) and a Policy ({Policy.Config}); a policy chooses masks itself, so give one of them.", "options");
        if (Granularity is null) throw new ArgumentException("PruningOptions.Granularity is null.", "options");
        if (Overrides is null) throw new ArgumentException("PruningOptions.Overrides is null.", "options");
        if (!Enum.IsDefined(Scope)) throw new ArgumentException($"PruningOptions.Scope {Scope} is not a known scope.", "options");

        IReadOnlyList<string> names;
        try
        {
            names = Targets.Resolve(model);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"PruningOptions.Targets: {e.Bare()}", "options", e);
        }
        foreach (var (name, value) in Overrides)
        {
            if (!names.Contains(name))
                throw new ArgumentException($"PruningOptions.Overrides names '{name}', which is not a pruned parameter. Pruned: {string.Join(", ", names)}.", "options");
            if (value is null)
                throw new ArgumentException($"PruningOptions.Overrides['{name}'] is null.", "options");
            if (value.Schedule is not null && value.FinalSparsity is not null)
                throw new ArgumentException($"PruningOptions.Overrides['{name}'] has both a schedule and a final sparsity; give it one.", "options");
            if (Scope == PruningScope.Global && (value.Schedule is not null || value.FinalSparsity is not null))
                throw new ArgumentException($"PruningOptions.Overrides['{name}'] sets a schedule or final sparsity, which a global ranking (PruningScope.Global) cannot honour: it has one schedule; steer it with Bounds instead.", "options");
        }
        if (Scope == PruningScope.Global && Granularity.RunLength > 0)
            throw new ArgumentException($"{Granularity} gives every run of {Granularity.RunLength} its own budget, so it cannot share a global ranking; use PruningScope.LayerWise.", "options");

        var parameters = new List<ResolvedParameter>(names.Count);
        foreach (string name in names)
        {
            var weight = model.get_parameter(name)!;
            long[] shape = weight.shape;
            ParameterOverride? custom = Overrides.GetValueOrDefault(name);
            PruningSchedule schedule = custom?.Schedule
                ?? (custom?.FinalSparsity is double final ? Schedule.WithFinalSparsity(final) : Schedule);
            try
            {
                Granularity.Validate(name, shape);
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"PruningOptions.Granularity: {e.Bare()}", "options", e);
            }
            if (schedule.FinalSparsity > Granularity.MaxSparsity + 1e-12)
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                    $"{Granularity} prunes at most {Granularity.MaxSparsity:P1}, but the schedule of '{name}' ends at {schedule.FinalSparsity:P1}."), "options");
            string[] coupled = Channels?.CoupledWith(name).ToArray() ?? [];
            string[] scoredWith = Channels?.ScoredWith(name).ToArray() ?? [];
            foreach (string c in coupled)
            {
                if (model.get_parameter(c) is null)
                    throw new ArgumentException($"PruningOptions.Channels names '{c}', which this model does not have: was it analyzed from another model?", "options");
                if (names.Contains(c))
                    throw new ArgumentException($"'{c}' is pruned with '{name}' (they share channels), so it cannot be a target of its own; target only the first weight of each group (ChannelGraph.Weights).", "options");
            }
            if (scoredWith.Length > 0 && (Granularity.GroupCount(shape) != shape[0] || Policy is not null))
                throw new ArgumentException($"'{name}' shares its channels with {string.Join(", ", scoredWith.Select(w => $"'{w}'"))}: a dependency group is scored per channel, so it needs PruningGranularity.OutputChannels and a criterion that scores weights (not a mask policy).", "options");
            parameters.Add(new ResolvedParameter(name, shape, schedule, custom?.Bounds ?? SparsityRange.Unbounded, coupled)
            {
                ScoredWith = scoredWith,
                ScoredCount = scoredWith.Sum(w => model.get_parameter(w)!.numel()),
            });
        }
        return new ResolvedPruning(parameters, Scope, Policy ?? new ScoredSelection(Criterion), Granularity);
    }
}
