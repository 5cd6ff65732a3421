using Pruning.Analysis;
using Pruning.Analysis.Amc;
using Pruning.Structure;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Analysis.Amc;

[Collection(TorchCollection.Name)]
public sealed class AmcTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pruning-amc-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static Sequential Cnn(int seed)
    {
        torch.manual_seed(seed);
        return nn.Sequential(
            ("conv1", nn.Conv2d(1, 8, 3, padding: 1)), ("bn1", nn.BatchNorm2d(8)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(8, 16, 3, padding: 1)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
            ("flat", nn.Flatten()), ("fc", nn.Linear(16 * 2 * 2, 3)));
    }

    /// <summary>The per-layer sparsity the model holds now (the synthetic rewards read it).</summary>
    private static double[] Sparsities(nn.Module model, params string[] names) =>
        names.Select(n =>
        {
            Tensor w = model.get_parameter(n)!;
            return 1 - w.count_nonzero().item<long>() / (double)w.numel();
        }).ToArray();

    [Fact]
    public void The_state_of_a_3_layer_model_is_encoded_as_computed_by_hand()
    {
        var model = TestModels.Mlp(1); // fc1 16→32 (512 weights), fc2 32→24 (768), fc3 24→3 (72)
        using var environment = new AmcEnvironment(model, new AmcOptions { Budget = 1 });
        environment.Layers.Select(l => l.Weight).Should().Equal("fc1.weight", "fc2.weight", "fc3.weight");

        float[] s0 = environment.State(0, [0, 0, 0]);
        s0.Should().Equal([0f, 0f, 0f, 1f, 0f, 0f, (float)((512 - 72) / 696.0), 0f, (float)(840 / 1352.0), 0f],
            (a, b) => Math.Abs(a - b) < 1e-6f);
        float[] s1 = environment.State(1, [256, 0, 0]);  // fc1 at 50 %
        s1.Should().Equal([0.5f, 0f, 1f, (float)(21 / 29.0), 0f, 0f, 1f, (float)(256 / 1352.0), (float)(72 / 1352.0), 0.5f],
            (a, b) => Math.Abs(a - b) < 1e-6f);
        float[] s2 = environment.State(2, [256, 384, 0]);
        s2[7].Should().BeApproximately(640f / 1352, 1e-6f);
        s2[8].Should().Be(0);
        s2[9].Should().BeApproximately(0.5f, 1e-6f);
        environment.State(3, [256, 384, 36]).Should().OnlyContain(v => v == 0, "the terminal state");
    }

    [Theory]
    [InlineData(AmcMode.Fine)]
    [InlineData(AmcMode.Channel)]
    public void The_action_clip_keeps_every_random_policy_within_the_budget(AmcMode mode)
    {
        nn.Module model = mode == AmcMode.Fine ? TestModels.Mlp(2) : Cnn(2);
        var random = new Random(3);
        for (int trial = 0; trial < 200; trial++)
        {
            double budget = 0.25 + 0.75 * random.NextDouble();
            using var environment = new AmcEnvironment(model, new AmcOptions
            {
                Mode = mode, Resource = mode == AmcMode.Fine ? AmcResource.NonZeros : AmcResource.Flops, Budget = budget, InputShape = [1, 8, 8],
            });
            var pruned = new long[environment.Layers.Count];
            for (int t = 0; t < pruned.Length; t++) pruned[t] = environment.Clip(t, random.NextDouble(), pruned);
            environment.Resource(pruned).Should().BeLessThanOrEqualTo(budget * environment.Dense * (1 + 1e-12), $"trial {trial}, budget {budget}");
            for (int t = 0; t < pruned.Length; t++) pruned[t].Should().BeInRange(environment.MinUnits[t], environment.MaxUnits[t]);
        }
    }

    [Fact]
    public void Channel_flops_count_what_the_shrunk_model_computes()
    {
        var model = Cnn(4);
        using var environment = new AmcEnvironment(model, new AmcOptions { Mode = AmcMode.Channel, Resource = AmcResource.Flops, Budget = 1, InputShape = [1, 8, 8] });
        // Dense MACs: conv1 9·64·1·8, conv2 9·16·8·16, fc 4·16·3. Keeping 5 of 8 and 10 of 16 channels:
        environment.Dense.Should().Be(9 * 64 * 1 * 8 + 9 * 16 * 8 * 16 + 4 * 16 * 3);
        environment.Resource([3, 6]).Should().Be(9 * 64 * 1 * 5 + 9 * 16 * 5 * 10 + 4 * 10 * 3);
        var kept = new Dictionary<string, long> { ["conv1.weight"] = 5, ["conv2.weight"] = 10 };
        using var example = torch.randn(2, 1, 8, 8);
        ((double)Pruning.Structure.ChannelGraph.Trace(model, example).Macs(kept)).Should().Be(environment.Resource([3, 6]));
    }

    [Fact]
    public void A_depthwise_separable_chain_is_searched_by_channels_and_every_episode_meets_its_flops_budget()
    {
        torch.manual_seed(6);
        var model = nn.Sequential(
            ("conv1", nn.Conv2d(1, 8, 3, padding: 1, bias: false)), ("bn1", nn.BatchNorm2d(8)), ("relu1", nn.ReLU6()),
            ("dw", nn.Conv2d(8, 8, 3, padding: 1, groups: 8, bias: false)), ("dwbn", nn.BatchNorm2d(8)), ("dwrelu", nn.ReLU6()),
            ("pw", nn.Conv2d(8, 16, 1, bias: false)), ("pwbn", nn.BatchNorm2d(16)), ("pwrelu", nn.ReLU6()),
            ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(16, 3)));
        model.eval();
        var options = new AmcOptions { Mode = AmcMode.Channel, Resource = AmcResource.Flops, Budget = 0.5, InputShape = [1, 8, 8], Episodes = 12, WarmupEpisodes = 4, Seed = 2 };
        using (var environment = new AmcEnvironment(model, options))
        {
            // The producers are searched; the depthwise layer follows conv1: keeping 5 of 8 and 10 of 16 channels costs
            // conv1 9·64·5, dw 9·64·5, pw 64·5·10, fc 10·3.
            environment.Layers.Select(l => l.Weight).Should().Equal("conv1.weight", "pw.weight");
            environment.Resource([3, 6]).Should().Be(9 * 64 * 5 + 9 * 64 * 5 + 64 * 5 * 10 + 10 * 3);
        }
        AmcResult result = AmcSearch.Run(model, m => Sparsities(m, "conv1.weight", "pw.weight").Sum(), options);
        result.Episodes.Should().HaveCount(12).And.OnlyContain(e => e.Resource <= 0.5 + 1e-12);
        // The weights are restored after every episode.
        Sparsities(model, "conv1.weight", "dw.weight", "pw.weight").Should().OnlyContain(v => v == 0);
    }

    [Fact]
    public void A_resnet_of_user_blocks_is_searched_by_dependency_groups_and_its_flops_are_what_the_shrunk_model_computes()
    {
        var model = Pruning.Tests.Structure.ChannelGraphTests.TinyResNet(7);
        var options = new AmcOptions { Mode = AmcMode.Channel, Resource = AmcResource.Flops, Budget = 0.5, InputShape = [1, 12, 12], Episodes = 10, WarmupEpisodes = 4, Seed = 3 };
        long[] pruned = [3, 2, 5, 7];
        double predicted;
        using (var environment = new AmcEnvironment(model, options))
        {
            environment.Layers.Select(l => l.Weight).Should().Equal("stem.weight", "block1.conv1.weight", "block2.conv1.weight", "block2.conv2.weight");
            environment.Layers.Select(l => l.Units).Should().Equal(8, 8, 16, 16);
            predicted = environment.Resource(pruned);
        }
        AmcResult result = AmcSearch.Run(model, m => Sparsities(m, "stem.weight", "block2.conv2.weight").Sum(), options);
        result.Episodes.Should().HaveCount(10).And.OnlyContain(e => e.Resource <= 0.5 + 1e-12);
        Sparsities(model, "stem.weight", "block1.conv2.weight", "block2.down.0.weight").Should().OnlyContain(v => v == 0, "the weights are restored after every episode");

        // The same policy applied with the pruner and shrunk: the MACs the environment predicted.
        var graph = ChannelGraph.Trace(model, torch.randn(2, 1, 12, 12));
        var overrides = graph.Weights.Select((w, t) => (w, t)).ToDictionary(p => p.w, p => new ParameterOverride { FinalSparsity = pruned[p.t] / (double)graph.Groups[p.t].Channels });
        using (var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new Pruning.Scheduling.OneShotSchedule(0.5),
            Targets = Pruning.Targets.PruningTargets.Default.Include([.. graph.Weights]),
            Granularity = Pruning.Grouping.PruningGranularity.OutputChannels(),
            Channels = graph,
            Overrides = overrides,
        }))
        {
            pruner.Step();
            pruner.Strip();
        }
        graph.ShrinkInPlace();
        ChannelGraph.Trace(model, torch.randn(2, 1, 12, 12)).Macs().Should().Be((long)predicted);
    }

    [Fact]
    public void The_replay_buffer_keeps_the_latest_transitions_and_the_soft_update_blends_by_tau()
    {
        var buffer = new ReplayBuffer(3);
        for (int i = 0; i < 5; i++) buffer.Add(new Transition([i], i, i, [i + 1], false));
        buffer.Count.Should().Be(3);
        buffer.InOrder().Select(t => t.Action).Should().Equal(2f, 3f, 4f);
        buffer.Sample(50, new AmcRandom(1)).Select(t => t.Action).Should().OnlyContain(a => a >= 2 && a <= 4).And.Contain([2f, 3f, 4f]);

        using var agent = new DdpgAgent(2, 4, 1e-3, 1e-3, tau: 0.25, discount: 1, seed: 5);
        Tensor source = agent.Actor.parameters().First(), target = agent.ActorTarget.parameters().First();
        using (torch.no_grad()) { source.fill_(2.0); target.fill_(10.0); }
        agent.SoftUpdate(agent.Actor, agent.ActorTarget);
        target.data<float>().ToArray().Should().OnlyContain(v => Math.Abs(v - (0.75f * 10 + 0.25f * 2)) < 1e-6f);
    }

    [Fact]
    public void The_agent_learns_a_known_optimum_of_a_synthetic_reward()
    {
        // Reward peaked at ratios [0.2, 0.8, 0.5], no budget pressure: after the 100 random warm-up episodes the policy
        // must move there; random actions average 0.5 each.
        double[] optimum = [0.2, 0.8, 0.5];
        var model = TestModels.Mlp(6);
        var result = AmcSearch.Run(model, m => 1 - Sparsities(m, "fc1.weight", "fc2.weight", "fc3.weight").Zip(optimum).Sum(p => (p.First - p.Second) * (p.First - p.Second)),
            new AmcOptions { Budget = 1, Episodes = 300, WarmupEpisodes = 100, Seed = 7 });
        var late = result.Episodes.TakeLast(30).ToList();
        for (int t = 0; t < 3; t++)
            late.Average(e => e.Ratios[t]).Should().BeApproximately(optimum[t], 0.1, $"layer {t}'s ratio over the last 30 episodes");
        late.Average(e => e.Reward).Should().BeGreaterThan(result.Episodes.Take(100).Average(e => e.Reward) + 0.1);
        result.Best.Ratios.Zip(optimum).Should().OnlyContain(p => Math.Abs(p.First - p.Second) < 0.1);
        TestModels.Values(model.get_parameter("fc1.weight")!).Should().NotContain(0f, "the model is restored after the search");
    }

    [Fact]
    public void A_search_resumed_from_its_checkpoint_is_bit_identical()
    {
        double[] optimum = [0.3, 0.6, 0.4];
        double Evaluate(nn.Module m) => 1 - Sparsities(m, "fc1.weight", "fc2.weight", "fc3.weight").Zip(optimum).Sum(p => Math.Abs(p.First - p.Second));
        AmcOptions Options(string? path) => new() { Budget = 0.6, Episodes = 40, WarmupEpisodes = 10, Seed = 8, Hidden = 32, CheckpointPath = path, CheckpointEvery = 5 };
        var straight = AmcSearch.Run(TestModels.Mlp(9), Evaluate, Options(null));

        string path = Path.Combine(_dir, "search.amc");
        var crash = () => AmcSearch.Run(TestModels.Mlp(9), Evaluate, Options(path), e => { if (e.Episode == 22) throw new OperationCanceledException("stop"); });
        crash.Should().Throw<OperationCanceledException>();
        var resumed = AmcSearch.Run(TestModels.Mlp(9), Evaluate, Options(path));

        resumed.Episodes.Should().HaveCount(40);
        for (int e = 0; e < 40; e++)
        {
            resumed.Episodes[e].Ratios.Should().Equal(straight.Episodes[e].Ratios, $"episode {e}");
            resumed.Episodes[e].Reward.Should().Be(straight.Episodes[e].Reward);
        }
        resumed.Ratios.Should().Equal(straight.Ratios);
        straight.Episodes.Should().OnlyContain(e => e.Resource <= 0.6 + 1e-12);
    }

    [Fact]
    public void Bad_input_is_refused_naming_what_is_wrong()
    {
        var mlp = TestModels.Mlp(10);
        FluentActions.Invoking(() => AmcSearch.Run(mlp, _ => 1, new AmcOptions { Budget = 0.001, MaxRatio = 0.9 }))
            .Should().Throw<ArgumentException>().WithMessage("*Budget*unreachable*");
        FluentActions.Invoking(() => AmcSearch.Run(nn.Sequential(("relu", nn.ReLU())), _ => 1, new AmcOptions { Budget = 0.5 }))
            .Should().Throw<ArgumentException>().WithMessage("*Targets*");
        FluentActions.Invoking(() => AmcSearch.Run(nn.LSTM(4, 4), _ => 1, new AmcOptions { Budget = 0.5, Mode = AmcMode.Channel, Resource = AmcResource.Flops, InputShape = [4] }))
            .Should().Throw<ArgumentException>().WithMessage("*LSTM*takes one tensor*");
        FluentActions.Invoking(() => AmcSearch.Run(nn.Sequential(("emb", nn.Embedding(4, 4)), ("fc", nn.Linear(4, 2))), _ => 1,
                new AmcOptions { Budget = 0.5, Mode = AmcMode.Channel, Resource = AmcResource.Flops, InputShape = [1] }))
            .Should().Throw<ArgumentException>().WithMessage("*Channel mode cannot search this model: 'emb' (Embedding) failed on the traced input*embedding*");
        FluentActions.Invoking(() => AmcSearch.Run(mlp, _ => 1, new AmcOptions { Budget = 0.5, Resource = AmcResource.Latency }))
            .Should().Throw<ArgumentException>().WithMessage("*Latency*required*");
        FluentActions.Invoking(() => AmcSearch.Run(mlp, _ => 1, new AmcOptions { Budget = 0.5, Mode = AmcMode.Channel, Resource = AmcResource.NonZeros, InputShape = [16] }))
            .Should().Throw<ArgumentException>().WithMessage("*NonZeros*channel*");
        FluentActions.Invoking(() => AmcSearch.Run(mlp, _ => 1, new AmcOptions { Budget = 1.5 }))
            .Should().Throw<ArgumentOutOfRangeException>().WithMessage("*Budget*");
        FluentActions.Invoking(() => AmcSearch.Run(mlp, _ => 1, new AmcOptions { Budget = 0.5, Criterion = new Pruning.Criteria.MagnitudeCriterion(), Policy = new Pruning.Reconstruction.WandaPolicy() }))
            .Should().Throw<ArgumentException>().WithMessage("*AmcOptions sets both a Criterion*Policy (Wanda*");
        FluentActions.Invoking(() => AmcSearch.Run(mlp, _ => double.NaN, new AmcOptions { Budget = 0.5, Episodes = 2, WarmupEpisodes = 1 }))
            .Should().Throw<InvalidOperationException>().WithMessage("*NaN*");

        string path = Path.Combine(_dir, "other.amc");
        AmcSearch.Run(mlp, _ => 1, new AmcOptions { Budget = 0.5, Episodes = 3, WarmupEpisodes = 1, Hidden = 8, CheckpointPath = path });
        FluentActions.Invoking(() => AmcSearch.Run(mlp, _ => 1, new AmcOptions { Budget = 0.4, Episodes = 3, WarmupEpisodes = 1, Hidden = 8, CheckpointPath = path }))
            .Should().Throw<InvalidDataException>().WithMessage("*another search*");
        byte[] bytes = File.ReadAllBytes(path);
        bytes[bytes.Length / 2] ^= 0x40;
        File.WriteAllBytes(path, bytes);
        FluentActions.Invoking(() => AmcSearch.Run(mlp, _ => 1, new AmcOptions { Budget = 0.5, Episodes = 3, WarmupEpisodes = 1, Hidden = 8, CheckpointPath = path }))
            .Should().Throw<InvalidDataException>().WithMessage($"*{path}*checksum*");
        File.WriteAllBytes(path, bytes[..(bytes.Length / 3)]);
        FluentActions.Invoking(() => AmcSearch.Run(mlp, _ => 1, new AmcOptions { Budget = 0.5, Episodes = 3, WarmupEpisodes = 1, Hidden = 8, CheckpointPath = path }))
            .Should().Throw<InvalidDataException>().WithMessage("*truncated*");
        // Earlier releases' checkpoints (magic PRNAMC01, no version field) are refused by their version, not misread.
        File.WriteAllBytes(path, [.. "PRNAMC01"u8, .. BitConverter.GetBytes(100L), .. new byte[104]]);
        FluentActions.Invoking(() => AmcSearch.Run(mlp, _ => 1, new AmcOptions { Budget = 0.5, Episodes = 3, WarmupEpisodes = 1, Hidden = 8, CheckpointPath = path }))
            .Should().Throw<InvalidDataException>().WithMessage($"AMC checkpoint '{path}' has format version 1*delete it*");
    }
}
