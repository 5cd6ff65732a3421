using System.Runtime.InteropServices;
using Pruning.Optimizers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests;

internal static class TestModels
{
    /// <summary>784-style MLP in miniature: fc1 (16→32), fc2 (32→24), fc3 (24→3).</summary>
    public static Sequential Mlp(int seed, int inputs = 16)
    {
        torch.manual_seed(seed);
        return nn.Sequential(
            ("fc1", nn.Linear(inputs, 32)), ("relu1", nn.ReLU()),
            ("fc2", nn.Linear(32, 24)), ("relu2", nn.ReLU()),
            ("fc3", nn.Linear(24, 3)));
    }

    /// <summary>
    /// Prunes the output channels of <paramref name="weights"/> one-shot by L1 norm to <paramref name="sparsity"/>, their
    /// coupled parameters with them (<paramref name="channels"/>), and strips the masks: ready for <c>channels.ShrinkInPlace()</c>.
    /// </summary>
    public static void PruneChannels(nn.Module model, Pruning.Structure.ChannelGraph channels, double sparsity, params string[] weights)
    {
        using var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new Pruning.Scheduling.OneShotSchedule(sparsity),
            Targets = Pruning.Targets.PruningTargets.Default.Include(weights),
            Granularity = Pruning.Grouping.PruningGranularity.OutputChannels(),
            Channels = channels,
        });
        pruner.Step();
        pruner.Strip();
    }

    /// <summary>A seeded batch of inputs and labels; labels follow a fixed rule so a model can learn them.</summary>
    public static (Tensor X, Tensor Y) Batch(int seed, int size = 32, int inputs = 16)
    {
        var rng = new Random(seed);
        var x = new float[size * inputs];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        var y = new long[size];
        for (int r = 0; r < size; r++)
        {
            float a = x[r * inputs] + x[r * inputs + 1], b = x[r * inputs + 2] - x[r * inputs + 3];
            y[r] = a > 0.3f ? 0 : b > 0 ? 1 : 2;
        }
        return (torch.tensor(x, [size, inputs]), torch.tensor(y));
    }

    /// <summary>The Scalar-safe optimizers (bit-identical to TorchSharp's, see SafeOptimTests), and TorchSharp's RMSprop.</summary>
    public static optim.Optimizer Optimizer(string kind, nn.Module model) => kind switch
    {
        "sgd-momentum" => SafeOptim.SGD(model.parameters(), 0.05, momentum: 0.9),
        "nesterov" => SafeOptim.SGD(model.parameters(), 0.05, momentum: 0.9, nesterov: true),
        "adam" => SafeOptim.Adam(model.parameters(), 0.01),
        "adamw" => SafeOptim.AdamW(model.parameters(), 0.01, weight_decay: 0.1),
        "rmsprop" => torch.optim.RMSProp(model.parameters(), 0.01, momentum: 0.9),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    /// <summary>One training step on batch <paramref name="step"/>; returns the loss.</summary>
    public static float TrainStep(nn.Module model, optim.Optimizer optimizer, int step, int inputs = 16)
    {
        using var scope = torch.NewDisposeScope();
        var (x, y) = Batch(1000 + step, inputs: inputs);
        optimizer.zero_grad();
        var loss = nn.functional.cross_entropy(((Sequential)model).call(x), y);
        loss.backward();
        optimizer.step();
        return loss.item<float>();
    }

    public static float[] Values(Tensor t)
    {
        using var c = t.detach().to(ScalarType.Float32).cpu().contiguous();
        return MemoryMarshal.Cast<byte, float>(c.bytes).ToArray();
    }
}
