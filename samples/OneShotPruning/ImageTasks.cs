using Pruning.Reconstruction;
using Pruning.Samples;
using Pruning.Targets;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>Fashion-MNIST classifiers: LeNet-300-100 ("mlp") and the conv-BN CNN of samples/ChannelPruning ("cnn").</summary>
internal sealed class ImageTask(string name, FashionMnist train, FashionMnist test, int epochs) : ModelTask
{
    private const int BatchSize = 128;

    public override string Name => name;

    public override string MetricName => "test_accuracy";

    public override bool HigherIsBetter => true;

    // The CNN's first conv (9 weights per filter) is left dense, as is usual and as 2:4 requires (rows of 4k weights).
    public override PruningTargets Targets => name == "cnn" ? PruningTargets.Default.Exclude("conv1.weight") : PruningTargets.Default;

    private bool Images => name == "cnn";

    private static Sequential Build(string name, int seed)
    {
        torch.manual_seed(seed);
        return name == "cnn"
            ? nn.Sequential(
                ("conv1", nn.Conv2d(1, 16, 3, padding: 1)), ("bn1", nn.BatchNorm2d(16)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
                ("conv2", nn.Conv2d(16, 32, 3, padding: 1)), ("bn2", nn.BatchNorm2d(32)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
                ("conv3", nn.Conv2d(32, 64, 3, padding: 1)), ("bn3", nn.BatchNorm2d(64)), ("relu3", nn.ReLU()), ("gap", nn.AdaptiveAvgPool2d(1)),
                ("flat", nn.Flatten()), ("fc", nn.Linear(64, 10)))
            : nn.Sequential(("fc1", nn.Linear(784, 300)), ("relu1", nn.ReLU()), ("fc2", nn.Linear(300, 100)), ("relu2", nn.ReLU()), ("fc3", nn.Linear(100, 10)));
    }

    private Tensor Input(Tensor images) => Images ? images.reshape(-1, 1, 28, 28) : images;

    protected override nn.Module Create() => Build(name, 1);

    protected override string TrainFromScratch(nn.Module model)
    {
        var dense = (Sequential)model;
        long perEpoch = (train.Count + BatchSize - 1) / BatchSize;
        var order = new Generator(1);
        Tensor? permutation = null;
        Train(dense, (int)(perEpoch * epochs), 1e-3, step =>
        {
            long start = step % perEpoch * BatchSize;
            if (start == 0) { permutation?.Dispose(); permutation = torch.randperm(train.Count, generator: order).DetachFromDisposeScope(); }
            Tensor idx = permutation!.narrow(0, start, Math.Min(BatchSize, train.Count - start));
            return nn.functional.cross_entropy(dense.call(Input(train.Images.index_select(0, idx))), train.Labels.index_select(0, idx));
        }, null);
        permutation?.Dispose();
        return $"{epochs} epochs on {train.Count:N0} images";
    }

    public override CalibrationSet Calibration(nn.Module model, int samples, int seed)
    {
        var g = new Generator((ulong)(1000 + seed));
        Tensor idx = torch.randperm(train.Count, generator: g).narrow(0, 0, Math.Min(samples, train.Count));
        Tensor images = Input(train.Images.index_select(0, idx));
        return new CalibrationSet(images.split(BatchSize).ToList());
    }

    public override double Evaluate(nn.Module model) => test.Accuracy((Sequential)model, asImages: Images);

    public override void FineTune(nn.Module model, Pruning.GradualPruner pruner, int steps, int seed)
    {
        var g = new Generator((ulong)(2000 + seed));
        Train(model, steps, 1e-4, _ =>
        {
            Tensor idx = torch.randint(0, train.Count, [BatchSize], ScalarType.Int64, generator: g);
            return nn.functional.cross_entropy(((Sequential)model).call(Input(train.Images.index_select(0, idx))), train.Labels.index_select(0, idx));
        }, pruner);
    }
}
