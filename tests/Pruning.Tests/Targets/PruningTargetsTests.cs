using Pruning.Targets;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Targets;

[Collection(TorchCollection.Name)]
public sealed class PruningTargetsTests
{
    private static Sequential Cnn() => nn.Sequential(
        ("conv1", nn.Conv2d(1, 4, 3)), ("bn1", nn.BatchNorm2d(4)), ("relu", nn.ReLU()),
        ("conv2", nn.Conv2d(4, 8, 3)), ("flat", nn.Flatten()), ("fc", nn.Linear(8, 10)));

    [Fact]
    public void Default_TakesEveryWeightWithTwoOrMoreDimensions_NotBiasesOrNorms() =>
        PruningTargets.Default.Resolve(Cnn()).Should().Equal("conv1.weight", "conv2.weight", "fc.weight");

    [Fact]
    public void Default_TakesRecurrentAndEmbeddingWeights()
    {
        var model = new LanguageModel();
        PruningTargets.Default.Resolve(model).Should().Equal(
            "emb.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.weight_ih_l1", "lstm.weight_hh_l1");
        var gru = nn.GRU(4, 6);
        PruningTargets.Default.Resolve(gru).Should().Equal("weight_ih_l0", "weight_hh_l0");
    }

    private sealed class LanguageModel : nn.Module<Tensor, Tensor>
    {
        private readonly Embedding emb = nn.Embedding(50, 8);
        private readonly LSTM lstm = nn.LSTM(8, 16, numLayers: 2);

        public LanguageModel() : base(nameof(LanguageModel)) => RegisterComponents();

        public override Tensor forward(Tensor input) => lstm.call(emb.call(input)).Item1;
    }

    [Fact]
    public void Exclude_KeepsTheFirstConvAndTheClassifierDense() =>
        PruningTargets.Default.Exclude("conv1.*", "fc.weight").Resolve(Cnn()).Should().Equal("conv2.weight");

    [Fact]
    public void Include_NarrowsByGlob() =>
        PruningTargets.Default.Include("conv?.weight").Resolve(Cnn()).Should().Equal("conv1.weight", "conv2.weight");

    [Fact]
    public void OfModuleType_SelectsByModuleClass()
    {
        PruningTargets.Default.OfModuleType<Linear>().Resolve(Cnn()).Should().Equal("fc.weight");
        PruningTargets.Default.OfModuleType<Linear>().OfModuleType<Conv2d>().Exclude("conv1.weight").Resolve(Cnn())
            .Should().Equal("conv2.weight", "fc.weight");
    }

    [Fact]
    public void APatternThatMatchesNothing_IsAnErrorNamingIt()
    {
        var act = () => PruningTargets.Default.Exclude("fc2.weight").Resolve(Cnn());
        act.Should().Throw<ArgumentException>().WithMessage("*'fc2.weight' matches no prunable parameter*conv1.weight*");
    }

    [Fact]
    public void AModuleTypeThatOwnsNothing_IsAnError()
    {
        var act = () => PruningTargets.Default.OfModuleType<LSTM>().Resolve(Cnn());
        act.Should().Throw<ArgumentException>().WithMessage("*LSTM*");
    }

    [Fact]
    public void ExcludingEverything_IsAnError()
    {
        var act = () => PruningTargets.Default.Exclude("*").Resolve(Cnn());
        act.Should().Throw<ArgumentException>().WithMessage("*nothing to prune*");
    }

    [Fact]
    public void EmptyPattern_IsRejected()
    {
        var act = () => PruningTargets.Default.Include(" ");
        act.Should().Throw<ArgumentException>().Which.ParamName.Should().Be("patterns");
    }
}
