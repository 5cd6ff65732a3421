using Pruning.Criteria;
using Pruning.Grouping;
using Pruning.Scheduling;
using Pruning.Selection;
using Pruning.Structure;
using Pruning.Targets;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Structure;

[Collection(TorchCollection.Name)]
public sealed class SequentialChannelsTests
{
    /// <summary>conv(1→8)-bn-relu-pool, conv(8→12)-bn-relu, flatten, fc(12·4·4→16)-relu, fc(16→10), on 12×12 inputs.</summary>
    private static Sequential Cnn(int seed)
    {
        torch.manual_seed(seed);
        var model = nn.Sequential(
            ("conv1", nn.Conv2d(1, 8, 3, padding: 1)), ("bn1", nn.BatchNorm2d(8)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(8, 12, 3)), ("bn2", nn.BatchNorm2d(12)), ("relu2", nn.ReLU()),
            ("flat", nn.Flatten()), ("fc1", nn.Linear(12 * 4 * 4, 16)), ("relu3", nn.ReLU()), ("fc2", nn.Linear(16, 10)));
        // Give the BatchNorms real running statistics and scales.
        using (torch.no_grad())
        {
            for (int i = 0; i < 5; i++) model.call(torch.randn(16, 1, 12, 12));
            model.get_parameter("bn1.weight")!.copy_(torch.rand(8) + 0.1);
            model.get_parameter("bn2.weight")!.copy_(torch.rand(12) + 0.1);
            model.get_parameter("bn1.bias")!.copy_(torch.randn(8) * 0.1);
            model.get_parameter("bn2.bias")!.copy_(torch.randn(12) * 0.1);
        }
        model.eval();
        return model;
    }

    [Fact]
    public void Analyze_FindsEachChannelLayerWithItsBatchNormAndConsumer()
    {
        SequentialChannels.Analyze(Cnn(1)).Layers.Should().Equal(
            new ChannelLayer("conv1", "bn1", "conv2", 8, 1),
            new ChannelLayer("conv2", "bn2", "fc1", 12, 16),
            new ChannelLayer("fc1", null, "fc2", 16, 1));
    }

    [Fact]
    public void Analyze_RefusesWhatIsNotAChain_NamingTheModule()
    {
        var sigmoid = nn.Sequential(("fc1", nn.Linear(4, 4)), ("gate", nn.Sigmoid()), ("fc2", nn.Linear(4, 2)));
        ((Action)(() => SequentialChannels.Analyze(sigmoid))).Should().Throw<NotSupportedException>().WithMessage("*'gate' is a Sigmoid*");
        var grouped = nn.Sequential(("conv", nn.Conv2d(4, 8, 3, groups: 2)), ("conv2", nn.Conv2d(8, 2, 1)));
        ((Action)(() => SequentialChannels.Analyze(grouped))).Should().Throw<NotSupportedException>().WithMessage("*'conv' is a grouped convolution*");
    }

    [Fact]
    public void BatchNormScaling_PrunesTheSmallestGammaChannels_AndTheirCoupledParameters()
    {
        var model = Cnn(2);
        float[] gamma = [0.9f, 0.05f, 0.7f, 0.01f, 0.8f, 0.3f, 0.02f, 0.6f];
        using (torch.no_grad()) model.get_parameter("bn1.weight")!.copy_(torch.tensor(gamma));
        var channels = SequentialChannels.Analyze(model);
        using var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(0.5),
            Targets = PruningTargets.Default.Include("conv1.weight"),
            Granularity = PruningGranularity.OutputChannels(),
            Criterion = new BatchNormScalingCriterion(channels),
            Channels = channels,
        });
        pruner.Step();

        int[] prunedChannels = [1, 3, 5, 6];
        float[] filters = TestModels.Values(model.get_parameter("conv1.weight")!);
        foreach (string coupled in new[] { "conv1.bias", "bn1.weight", "bn1.bias" })
        {
            float[] values = TestModels.Values(model.get_parameter(coupled)!);
            prunedChannels.Should().OnlyContain(c => values[c] == 0, coupled);
        }
        for (int c = 0; c < 8; c++)
            filters.Skip(c * 9).Take(9).All(v => v == 0).Should().Be(prunedChannels.Contains(c), $"filter {c}");
        TestModels.Values(model.get_parameter("bn1.weight")!).Where((_, c) => !prunedChannels.Contains(c)).Should().Equal(0.9f, 0.7f, 0.8f, 0.6f);
    }

    [Fact]
    public void GlobalSlimming_PrunesTheSmallestGammasAcrossLayers()
    {
        var model = Cnn(6);
        float[] gamma1 = [0.9f, 0.05f, 0.7f, 0.01f, 0.8f, 0.3f, 0.02f, 0.6f];
        float[] gamma2 = [0.5f, 0.04f, 0.45f, 0.03f, 0.35f, 0.4f, 0.06f, 0.55f, 0.65f, 0.75f, 0.85f, 0.95f];
        using (torch.no_grad())
        {
            model.get_parameter("bn1.weight")!.copy_(torch.tensor(gamma1));
            model.get_parameter("bn2.weight")!.copy_(torch.tensor(gamma2));
        }
        var channels = SequentialChannels.Analyze(model);
        using var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(0.3),
            Scope = PruningScope.Global,
            Targets = PruningTargets.Default.Include("conv1.weight", "conv2.weight"),
            Granularity = PruningGranularity.OutputChannels(LpNorm.LInfinity),
            Criterion = new BatchNormScalingCriterion(channels),
            Channels = channels,
        });
        pruner.Step();

        // 30 % of 20 channels = 6: the six smallest γ overall are 0.01, 0.02, 0.05 (bn1) and 0.03, 0.04, 0.06 (bn2).
        TestModels.Values(model.get_parameter("bn1.weight")!).Select((g, c) => (g, c)).Where(p => p.g == 0).Select(p => p.c).Should().Equal(1, 3, 6);
        TestModels.Values(model.get_parameter("bn2.weight")!).Select((g, c) => (g, c)).Where(p => p.g == 0).Select(p => p.c).Should().Equal(1, 3, 6);
    }

    [Fact]
    public void Shrink_GivesASmallerModelWithTheSameOutputs()
    {
        var model = Cnn(3);
        var channels = SequentialChannels.Analyze(model);
        using var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(0.5),
            Targets = PruningTargets.Default.Include("conv1.weight", "conv2.weight", "fc1.weight"),
            Granularity = PruningGranularity.OutputChannels(),
            Channels = channels,
        });
        pruner.Step();
        pruner.Strip();

        var small = channels.Shrink();

        using var x = torch.randn(32, 1, 12, 12);
        float[] expected = TestModels.Values(model.call(x));
        float[] actual = TestModels.Values(small.call(x));
        actual.Zip(expected).Should().OnlyContain(p => Math.Abs(p.First - p.Second) <= 1e-5f);
        small.get_parameter("conv1.weight")!.shape.Should().Equal(4, 1, 3, 3);
        small.get_parameter("conv2.weight")!.shape.Should().Equal(6, 4, 3, 3);
        small.get_parameter("bn2.running_mean").Should().BeNull("running statistics are buffers, not parameters");
        small.get_parameter("fc1.weight")!.shape.Should().Equal(8, 6 * 16);
        small.get_parameter("fc2.weight")!.shape.Should().Equal(10, 8);
        long Count(nn.Module m) => m.parameters().Sum(p => p.numel());
        Count(small).Should().Be(4 * 9 + 4 + 8 + 6 * 4 * 9 + 6 + 12 + 8 * 96 + 8 + 10 * 8 + 10);
        Count(small).Should().BeLessThan(Count(model) / 2);
    }

    [Fact]
    public void Shrink_WithoutCoupledMasks_KeepsChannelsThatStillOutputSomething()
    {
        var model = Cnn(4);
        var channels = SequentialChannels.Analyze(model);
        using (var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(0.5),
            Targets = PruningTargets.Default.Include("conv1.weight"),
            Granularity = PruningGranularity.OutputChannels(),
        }))
            pruner.Step();

        var small = channels.Shrink();

        small.get_parameter("conv1.weight")!.shape.Should().Equal([8L, 1, 3, 3], "zero filters still output the BatchNorm shift");
        using var x = torch.randn(8, 1, 12, 12);
        TestModels.Values(small.call(x)).Zip(TestModels.Values(model.call(x))).Should().OnlyContain(p => Math.Abs(p.First - p.Second) <= 1e-5f);
    }

    [Fact]
    public void BatchNormL1Penalty_IsLambdaTimesTheSumOfAbsoluteScales()
    {
        var model = Cnn(5);
        float expected = 1e-3f * (TestModels.Values(model.get_parameter("bn1.weight")!).Sum(Math.Abs) + TestModels.Values(model.get_parameter("bn2.weight")!).Sum(Math.Abs));
        var penalty = SequentialChannels.Analyze(model).BatchNormL1Penalty(1e-3);
        penalty.item<float>().Should().BeApproximately(expected, 1e-6f);
        penalty.backward();
        TestModels.Values(model.get_parameter("bn1.weight")!.grad!).Should().OnlyContain(g => Math.Abs(Math.Abs(g) - 1e-3f) < 1e-7f, "d|γ|/dγ = sign(γ)");
    }
}
