using System.Globalization;
using Pruning.Criteria;
using Pruning.Targets;
using static TorchSharp.torch;

namespace Pruning.Analysis.Amc;

/// <summary>What AMC's agent decides per layer.</summary>
public enum AmcMode
{
    /// <summary>The fraction of a weight's elements pruned (unstructured); the result feeds <see cref="PruningOptions.Overrides"/>.</summary>
    Fine,

    /// <summary>
    /// The fraction of a dependency group's channels removed, in any model <see cref="Structure.ChannelGraph.Trace"/>
    /// accepts (traced on a random input of <see cref="AmcOptions.InputShape"/>); prune with the result's overrides and
    /// <see cref="Structure.ChannelGraph"/> as the channels, then <see cref="Structure.ChannelGraph.ShrinkInPlace"/>.
    /// </summary>
    Channel,
}

/// <summary>The resource the budget limits.</summary>
public enum AmcResource
{
    /// <summary>Non-zero weights of the searched layers (fine mode).</summary>
    NonZeros,

    /// <summary>Multiply-accumulates of every Conv2d and Linear of the chain, at its kept channels (channel mode).</summary>
    Flops,

    /// <summary>The estimate of a <see cref="LatencyTable"/>: <see cref="LatencyTable.MeasureSparse"/> for fine mode, <see cref="LatencyTable.MeasureDense"/> for channel mode.</summary>
    Latency,
}

/// <summary>Settings of an AMC search (He et al. 2018); the defaults are the paper's.</summary>
public sealed class AmcOptions
{
    /// <summary>Fine (element sparsity) or channel (channels removed).</summary>
    public AmcMode Mode { get; init; } = AmcMode.Fine;

    /// <summary>What the budget counts. Fine mode: <see cref="AmcResource.NonZeros"/> or <see cref="AmcResource.Latency"/>;
    /// channel mode: <see cref="AmcResource.Flops"/> or <see cref="AmcResource.Latency"/>.</summary>
    public AmcResource Resource { get; init; } = AmcResource.NonZeros;

    /// <summary>The fraction of the resource the pruned model may keep, in (0, 1]: 0.5 for half the FLOPs, 0.1 for 90 % sparsity.</summary>
    public required double Budget { get; init; }

    /// <summary>The latency table, for <see cref="AmcResource.Latency"/>.</summary>
    public LatencyTable? Latency { get; init; }

    /// <summary>One sample's input shape (e.g. [1, 28, 28]), for channel mode: it fixes each layer's spatial size.</summary>
    public long[]? InputShape { get; init; }

    /// <summary>The weights searched in fine mode (channel mode searches every channel producer of the chain).</summary>
    public PruningTargets Targets { get; init; } = PruningTargets.Default;

    /// <summary>How a layer is pruned to the chosen ratio: element scores in fine mode, filter scores (L1 of them) in channel mode.</summary>
    /// <value>The default (null) is <see cref="MagnitudeCriterion"/>.</value>
    public IPruningCriterion? Criterion { get; init; }

    /// <summary>
    /// A mask policy that prunes each episode's layers itself instead of <see cref="Criterion"/>'s scores (fine mode:
    /// e.g. <see cref="Reconstruction.ObsPolicy"/> with a calibration set, all layers of an episode at once).
    /// </summary>
    /// <value>The default is none: the criterion's scores, selected by the engine.</value>
    public MaskPolicy? Policy { get; init; }

    /// <summary>The plan an episode prunes through: the searched weights, the mode's granularity, the graph's groups in channel mode.</summary>
    internal ResolvedPruning Plan(nn.Module model, IReadOnlyList<string> weights, Structure.ChannelGraph? graph)
    {
        var granularity = Mode == AmcMode.Fine ? Grouping.PruningGranularity.Element : Grouping.PruningGranularity.OutputChannels();
        return PruningOptions.ForProbes(model, weights, granularity, graph, Criterion, Policy);
    }

    /// <summary>The smallest ratio the agent may choose.</summary>
    public double MinRatio { get; init; }

    /// <summary>The largest ratio the agent may choose; null for the mode's default (fine 0.99, channel 0.8, AMC's preserve ratio of 0.2).</summary>
    public double? MaxRatio { get; init; }

    /// <summary>Episodes in all, the warm-up's included (paper: 400).</summary>
    public int Episodes { get; init; } = 400;

    /// <summary>Episodes with uniformly random actions before the agent learns (paper: 100).</summary>
    public int WarmupEpisodes { get; init; } = 100;

    /// <summary>Seeds the networks, the noise and the replay sampling.</summary>
    public int Seed { get; init; }

    /// <summary>Whether a higher metric is better (accuracy) or a lower one (loss, perplexity).</summary>
    public MetricDirection Direction { get; init; } = MetricDirection.HigherIsBetter;

    /// <summary>
    /// The paper's FLOPs-aware reward, −error·log(resource), with error = 1 − metric (higher-is-better metrics in [0, 1])
    /// or the metric itself (lower-is-better). Off: the reward is the metric (negated when lower is better).
    /// </summary>
    public bool LogResourceReward { get; init; }

    /// <summary>Hidden units of the actor's and the critic's two layers (paper: 300).</summary>
    public int Hidden { get; init; } = 300;

    /// <summary>Actor learning rate (paper: 1e-4).</summary>
    public double ActorLearningRate { get; init; } = 1e-4;

    /// <summary>Critic learning rate (paper: 1e-3).</summary>
    public double CriticLearningRate { get; init; } = 1e-3;

    /// <summary>Soft target update rate τ (paper: 0.01).</summary>
    public double Tau { get; init; } = 0.01;

    /// <summary>Discount (AMC: 1; every step of an episode carries the episode's reward).</summary>
    public double Discount { get; init; } = 1;

    /// <summary>Replay buffer capacity, in transitions (paper: 2,000).</summary>
    public int ReplayCapacity { get; init; } = 2000;

    /// <summary>Transitions per update (paper: 64).</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>σ of the truncated normal exploration noise after the warm-up (paper: 0.5).</summary>
    public double NoiseSigma { get; init; } = 0.5;

    /// <summary>σ's decay per episode after the warm-up (paper: 0.99).</summary>
    public double NoiseDecay { get; init; } = 0.99;

    /// <summary>A file to save the search to every <see cref="CheckpointEvery"/> episodes and at the end; when it exists at the start, the search resumes from it.</summary>
    public string? CheckpointPath { get; init; }

    /// <summary>Episodes between checkpoints.</summary>
    public int CheckpointEvery { get; init; } = 10;

    internal double EffectiveMaxRatio => MaxRatio ?? (Mode == AmcMode.Fine ? 0.99 : 0.8);

    internal void Validate()
    {
        void Require(bool ok, string name, object? value, string rule)
        {
            if (!ok) throw new ArgumentOutOfRangeException("options", value, $"AmcOptions.{name} {rule}; got {Convert.ToString(value, CultureInfo.InvariantCulture)}.");
        }
        Require(Enum.IsDefined(Mode), nameof(Mode), Mode, "is not a known mode");
        Require(Enum.IsDefined(Resource), nameof(Resource), Resource, "is not a known resource");
        Require(Budget > 0 && Budget <= 1, nameof(Budget), Budget, "must be in (0, 1]");
        Require(MinRatio >= 0 && MinRatio < 1, nameof(MinRatio), MinRatio, "must be in [0, 1)");
        Require(EffectiveMaxRatio > MinRatio && EffectiveMaxRatio < 1, nameof(MaxRatio), EffectiveMaxRatio, "must be in (MinRatio, 1)");
        Require(Episodes > WarmupEpisodes && WarmupEpisodes >= 0, nameof(Episodes), Episodes, "must exceed WarmupEpisodes (≥ 0)");
        Require(Hidden > 0, nameof(Hidden), Hidden, "must be positive");
        Require(ActorLearningRate > 0 && CriticLearningRate > 0, nameof(ActorLearningRate), ActorLearningRate, "and CriticLearningRate must be positive");
        Require(Tau > 0 && Tau <= 1, nameof(Tau), Tau, "must be in (0, 1]");
        Require(Discount >= 0 && Discount <= 1, nameof(Discount), Discount, "must be in [0, 1]");
        Require(ReplayCapacity > 0 && BatchSize > 0, nameof(ReplayCapacity), ReplayCapacity, "and BatchSize must be positive");
        Require(NoiseSigma >= 0 && NoiseDecay > 0 && NoiseDecay <= 1, nameof(NoiseSigma), NoiseSigma, "must be ≥ 0 with NoiseDecay in (0, 1]");
        Require(CheckpointEvery > 0, nameof(CheckpointEvery), CheckpointEvery, "must be positive");
        Require(Enum.IsDefined(Direction), nameof(Direction), Direction, "is not a known direction");
        if (Mode == AmcMode.Fine && Resource == AmcResource.Flops)
            throw new ArgumentException("AmcOptions.Resource Flops counts channels; fine mode limits NonZeros or Latency.", "options");
        if (Mode == AmcMode.Channel && Resource == AmcResource.NonZeros)
            throw new ArgumentException("AmcOptions.Resource NonZeros counts elements; channel mode limits Flops or Latency.", "options");
        if (Resource == AmcResource.Latency && Latency is null)
            throw new ArgumentException("AmcOptions.Latency is required for AmcResource.Latency.", "options");
        if (Mode == AmcMode.Channel && InputShape is null)
            throw new ArgumentException("AmcOptions.InputShape (one sample, e.g. [1, 28, 28]) is required in channel mode.", "options");
        ArgumentNullException.ThrowIfNull(Targets, "options.Targets");
        if (Criterion is not null && Policy is not null)
            throw new ArgumentException($"AmcOptions sets both a Criterion ({Criterion.Config}) and a Policy ({Policy.Config}); give one of them.", "options");
    }

    /// <summary>Everything that changes what a search does, for checkpoints: a resumed search must be the same search.</summary>
    internal string Fingerprint(IEnumerable<string> layers) => string.Create(CultureInfo.InvariantCulture,
        $"{Mode}|{Resource}|{Budget:R}|{MinRatio:R}|{EffectiveMaxRatio:R}|{Episodes}|{WarmupEpisodes}|{Seed}|{Direction}|{LogResourceReward}|{Hidden}|{ActorLearningRate:R}|{CriticLearningRate:R}|{Tau:R}|{Discount:R}|{ReplayCapacity}|{BatchSize}|{NoiseSigma:R}|{NoiseDecay:R}|{Policy?.Config ?? (Criterion ?? new MagnitudeCriterion()).Config}|{string.Join(",", layers)}");
}
