using System.Diagnostics;
using Pruning.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Analysis.Amc;

/// <summary>
/// AMC, AutoML for Model Compression (He et al., ECCV 2018): a DDPG agent walks the network layer by layer and picks
/// each layer's pruning ratio from a state that describes the layer and what has been pruned so far; each episode's
/// policy is applied (by the criterion, without fine-tuning unless the callback does it), evaluated, and the reward
/// trains the agent. Every action is clipped so that the budget can still be met (the resource-constrained action
/// space), so every episode's policy meets it exactly as <see cref="AmcOptions.Resource"/> counts it.
/// </summary>
/// <remarks>
/// Differences from the paper: the channel mode selects filters by the criterion's L1 norm, not by least-squares
/// reconstruction (<see cref="Reconstruction.ChannelReconstruction"/> does that after the search, if wanted); a ratio is the
/// fraction pruned in both modes (the paper's channel action is the fraction kept); the state has 10 features
/// (index, conv or not, in, out, kernel, stride, size, removed so far, left after, previous action).
/// </remarks>
public static class AmcSearch
{
    /// <summary>
    /// Searches per-layer ratios for <paramref name="model"/> under <paramref name="options"/>. The model is pruned for
    /// each evaluation and restored afterwards; on return it holds its original weights.
    /// </summary>
    /// <param name="model">The trained model (channel mode: any model ChannelGraph can trace).</param>
    /// <param name="evaluate">The metric of the pruned model on a validation split (never the test set); it may fine-tune briefly.</param>
    /// <param name="options">Budget, mode and the agent's settings.</param>
    /// <param name="progress">Called after each episode.</param>
    /// <exception cref="ArgumentException">The budget is unreachable, the model has nothing to search, or a layer does not suit the mode.</exception>
    /// <exception cref="InvalidDataException">The checkpoint file is corrupt, truncated, too large, or of another search.</exception>
    public static AmcResult Run(nn.Module model, Func<nn.Module, double> evaluate, AmcOptions options, Action<AmcEpisode>? progress = null)
    {
        TorchHealth.EnsureOnFirstUse();
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(evaluate);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var clock = Stopwatch.StartNew();
        using var environment = new AmcEnvironment(model, options);
        var layers = environment.Layers;
        string fingerprint = options.Fingerprint(layers.Select(l => l.Weight));
        using var agent = new DdpgAgent(AmcEnvironment.StateSize, options.Hidden, options.ActorLearningRate, options.CriticLearningRate,
            options.Tau, options.Discount, (ulong)options.Seed);
        var search = new SearchState(new AmcRandom((ulong)options.Seed ^ 0x414D43UL), new ReplayBuffer(options.ReplayCapacity));
        if (options.CheckpointPath is { } path && File.Exists(path))
            AmcCheckpoint.Read(path, fingerprint, layers.Count, options, agent, search);

        double minRatio = options.MinRatio, maxRatio = options.EffectiveMaxRatio;
        for (int episode = search.Episodes.Count; episode < options.Episodes; episode++)
        {
            bool warmup = episode < options.WarmupEpisodes;
            double sigma = warmup ? 0 : options.NoiseSigma * Math.Pow(options.NoiseDecay, episode - options.WarmupEpisodes);
            var pruned = new long[layers.Count];
            var states = new List<float[]>();
            for (int t = 0; t < layers.Count; t++)
            {
                float[] state = environment.State(t, pruned);
                states.Add(state);
                double proposed = warmup
                    ? minRatio + (maxRatio - minRatio) * search.Random.NextDouble()
                    : search.Random.NextTruncatedNormal(agent.Act(state), sigma, minRatio, maxRatio);
                pruned[t] = environment.Clip(t, proposed, pruned);
            }
            double metric = environment.Evaluate(pruned, evaluate);
            double resource = environment.Resource(pruned);
            double reward = Reward(metric, resource, options);
            double[] ratios = layers.Select((l, t) => (double)pruned[t] / l.Units).ToArray();
            for (int t = 0; t < layers.Count; t++)
                search.Replay.Add(new Transition(states[t], (float)ratios[t], (float)reward, environment.State(t + 1, pruned), t == layers.Count - 1));
            var record = new AmcEpisode(episode, warmup, ratios, resource / environment.Dense, metric, reward);
            search.Episodes.Add(record);
            if (!warmup)
            {
                // The moving-average baseline of the reward (AMC: α = 0.5), then one update per step of the episode.
                search.Baseline = search.Episodes.Count(e => !e.Warmup) == 1 ? reward : search.Baseline + 0.5 * (reward - search.Baseline);
                for (int t = 0; t < layers.Count; t++)
                    agent.Update(search.Replay.Sample(options.BatchSize, search.Random), search.Baseline);
            }
            progress?.Invoke(record);
            if (options.CheckpointPath is { } file && ((episode + 1) % options.CheckpointEvery == 0 || episode + 1 == options.Episodes))
                AmcCheckpoint.Write(file, fingerprint, agent, search);
        }
        AmcEpisode best = search.Episodes.MaxBy(e => e.Reward)!;
        return new AmcResult(layers.Select(l => l.Weight).ToArray(), best, search.Episodes.ToArray(), clock.Elapsed.TotalSeconds);
    }

    private static double Reward(double metric, double resource, AmcOptions options)
    {
        bool higher = options.Direction == MetricDirection.HigherIsBetter;
        if (!options.LogResourceReward) return higher ? metric : -metric;
        double error = higher ? 1 - metric : metric;
        return -error * Math.Log(Math.Max(resource, 1));
    }

    /// <summary>What a search carries from episode to episode besides the agent: the generator, the buffer, the log, the baseline.</summary>
    internal sealed class SearchState(AmcRandom random, ReplayBuffer replay)
    {
        public AmcRandom Random { get; } = random;
        public ReplayBuffer Replay { get; } = replay;
        public List<AmcEpisode> Episodes { get; } = [];
        public double Baseline { get; set; }
    }
}
