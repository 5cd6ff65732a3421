using BenchmarkDotNet.Attributes;
using Pruning;
using Pruning.Scheduling;
using Pruning.Selection;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Benchmarks;

/// <summary>
/// One full mask update (score, exact-k selection, new masks, re-mask) over the 2.4 M weights of the paper-sized
/// 784-1200-1200-10 MLP, layer-wise and global, and the per-step re-masking alone.
/// </summary>
public class MaskUpdateBenchmarks
{
    private Sequential _model = null!;
    private GradualPruner _everyStep = null!;
    private GradualPruner _remaskOnly = null!;

    [Params(PruningScope.LayerWise, PruningScope.Global)]
    public PruningScope Scope { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _model = BenchmarkModels.Mlp1200();
        _everyStep = new GradualPruner(_model, new PruningOptions { Schedule = new ConstantSparsitySchedule(0.9, 0, frequency: 1), Scope = Scope });
        _remaskOnly = new GradualPruner(_model, new PruningOptions { Schedule = new OneShotSchedule(0.9), Scope = Scope });
        _remaskOnly.Step();
    }

    /// <summary>A mask update over 2,395,200 weights plus the re-masking that follows it.</summary>
    [Benchmark(Baseline = true)]
    public void MaskUpdate() => _everyStep.Step();

    /// <summary>What every other step costs: re-masking the weights (no optimizer state).</summary>
    [Benchmark]
    public void RemaskOnly() => _remaskOnly.Step();
}
