using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Benchmarks;

/// <summary>The models the benchmarks measure, seeded.</summary>
internal static class BenchmarkModels
{
    /// <summary>LeNet-300-100: 266,200 prunable weights.</summary>
    public static Sequential LeNet300100() => Mlp(300, 100);

    /// <summary>784-1200-1200-10, the paper-sized MLP: 2,395,200 prunable weights.</summary>
    public static Sequential Mlp1200() => Mlp(1200, 1200);

    private static Sequential Mlp(int hidden1, int hidden2)
    {
        torch.manual_seed(1);
        return nn.Sequential(
            ("fc1", nn.Linear(784, hidden1)), ("relu1", nn.ReLU()),
            ("fc2", nn.Linear(hidden1, hidden2)), ("relu2", nn.ReLU()),
            ("fc3", nn.Linear(hidden2, 10)));
    }

    /// <summary>One Adam training step on a fixed batch, then the pruner's step if there is one.</summary>
    public static void TrainStep(Sequential model, optim.Optimizer optimizer, Tensor x, Tensor y, GradualPruner? pruner)
    {
        using var scope = torch.NewDisposeScope();
        optimizer.zero_grad();
        nn.functional.cross_entropy(model.call(x), y).backward();
        optimizer.step();
        pruner?.Step();
    }
}
