using BenchmarkDotNet.Attributes;
using Pruning;
using Pruning.Scheduling;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Benchmarks;

/// <summary>
/// What the pruner adds to a training step of LeNet-300-100 (batch 128, Adam): per-step re-masking plus, amortized,
/// one mask update every Δt = 100 steps. One operation = one training step; each invocation runs 100 of them, so
/// every invocation contains exactly one mask update.
/// </summary>
[MemoryDiagnoser(displayGenColumns: false)]
public class PrunerOverheadBenchmarks
{
    private const int StepsPerInvocation = 100;
    private Sequential _model = null!;
    private optim.Optimizer _optimizer = null!;
    private GradualPruner? _pruner;
    private Tensor _x = null!, _y = null!;

    [Params(false, true)]
    public bool Pruned { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _model = BenchmarkModels.LeNet300100();
        _optimizer = torch.optim.Adam(_model.parameters(), 1e-3);
        _x = torch.randn(128, 784);
        _y = torch.randint(0, 10, [128]);
        if (Pruned)
            _pruner = new GradualPruner(_model, new PruningOptions { Schedule = new ConstantSparsitySchedule(0.9, beginStep: 0, frequency: StepsPerInvocation) }, _optimizer);
    }

    [Benchmark(OperationsPerInvoke = StepsPerInvocation)]
    public void TrainStep()
    {
        for (int i = 0; i < StepsPerInvocation; i++)
            BenchmarkModels.TrainStep(_model, _optimizer, _x, _y, _pruner);
    }
}
