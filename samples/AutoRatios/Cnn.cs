using Pruning;
using Pruning.Samples;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>The conv-BN ×3 CNN of samples/ChannelPruning on Fashion-MNIST: building, training, accuracy.</summary>
internal static class Cnn
{
    public const int BatchSize = 128;
    public static readonly long[] Input = [1, 28, 28];

    public static Sequential Build(int seed)
    {
        torch.manual_seed(seed);
        return nn.Sequential(
            ("conv1", nn.Conv2d(1, 16, 3, padding: 1)), ("bn1", nn.BatchNorm2d(16)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(16, 32, 3, padding: 1)), ("bn2", nn.BatchNorm2d(32)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
            ("conv3", nn.Conv2d(32, 64, 3, padding: 1)), ("bn3", nn.BatchNorm2d(64)), ("relu3", nn.ReLU()), ("gap", nn.AdaptiveAvgPool2d(1)),
            ("flat", nn.Flatten()), ("fc", nn.Linear(64, 10)));
    }

    public static Sequential Copy(Sequential dense)
    {
        var copy = Build(1);
        copy.load_state_dict(dense.state_dict());
        copy.eval();
        return copy;
    }

    /// <summary>Adam on random batches of <paramref name="data"/>; the pruner, if any, steps after each update.</summary>
    public static void Train(Sequential model, FashionMnist data, long steps, double rate, GradualPruner? pruner, int seed)
    {
        model.train();
        var optimizer = Pruning.Optimizers.SafeOptim.Adam(model.parameters(), rate);
        var g = new Generator((ulong)(5000 + seed));
        for (long step = 0; step < steps; step++)
        {
            using var scope = torch.NewDisposeScope();
            Tensor idx = torch.randint(0, data.Count, [BatchSize], ScalarType.Int64, generator: g);
            optimizer.zero_grad();
            nn.functional.cross_entropy(model.call(data.Images.index_select(0, idx).reshape(-1, 1, 28, 28)), data.Labels.index_select(0, idx)).backward();
            optimizer.step();
            pruner?.Step();
        }
        model.eval();
    }

    public static double Accuracy(nn.Module model, FashionMnist data) => data.Accuracy((nn.Module<Tensor, Tensor>)model, asImages: true);
}
