using LargeSparseVsSmallDense.Harness;
using Pruning.Samples;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using Pruning.Optimizers;

namespace LargeSparseVsSmallDense.Experiments;

/// <summary>Experiments 1 (MLP widths), 2 (CNN width multipliers) and 2b (MobileNet width multipliers) on Fashion-MNIST.</summary>
internal sealed class ImageExperiments(FashionMnist train, FashionMnist test, int epochs, Action<string> log)
{
    private long StepsPerEpoch => (train.Count + 127) / 128;

    /// <summary>Dense MLPs 784-w-w-10 at every width, and the wider ones pruned gradually to the NNZ of every narrower dense one.</summary>
    public IEnumerable<ResultRow> Mlp(int[] denseWidths, int[] sparseWidths, int[] seeds) =>
        Family("mlp", [.. denseWidths.Select(w => (double)w)], [.. sparseWidths.Select(w => (double)w)], seeds,
            w => NnzBudget.MlpWeights((int)w), w => MlpModel((int)w), asImages: false);

    /// <summary>Dense CNNs at each multiplier, and the wider ones pruned to the NNZ of every narrower dense one.</summary>
    public IEnumerable<ResultRow> Cnn(double[] denseAlphas, double[] sparseAlphas, int[] seeds) =>
        Family("cnn", denseAlphas, sparseAlphas, seeds, NnzBudget.CnnWeights, CnnModel, asImages: true);

    /// <summary>Depthwise-separable MobileNets at each width multiplier α, and the wider ones pruned to the NNZ of every narrower dense one.</summary>
    public IEnumerable<ResultRow> MobileNet(double[] denseAlphas, double[] sparseAlphas, int[] seeds) =>
        Family("mobilenet", denseAlphas, sparseAlphas, seeds, alpha => Training.Weights(MobileNetModel(alpha)), MobileNetModel, asImages: true);

    private IEnumerable<ResultRow> Family(string experiment, double[] dense, double[] sparse, int[] seeds,
        Func<double, long> weights, Func<double, Sequential> make, bool asImages)
    {
        foreach (int seed in seeds)
        {
            foreach (double width in dense)
                yield return Run(experiment, width, 0, seed, () => make(width), asImages);
            foreach (double width in sparse)
                foreach (double budget in dense.Where(b => b < width))
                    yield return Run(experiment, width, NnzBudget.SparsityFor(weights(budget), weights(width)), seed, () => make(width), asImages);
        }
    }

    public static Sequential MlpModel(int width) => nn.Sequential(
        ("fc1", nn.Linear(784, width)), ("relu1", nn.ReLU()),
        ("fc2", nn.Linear(width, width)), ("relu2", nn.ReLU()),
        ("fc3", nn.Linear(width, 10)));

    /// <summary>Three 3×3 conv-BN-ReLU blocks (the first two followed by 2×2 max pooling), global average pooling, Linear.</summary>
    public static Sequential CnnModel(double alpha)
    {
        var (c1, c2, c3) = NnzBudget.CnnChannels(alpha);
        return nn.Sequential(
            ("conv1", nn.Conv2d(1, c1, 3, padding: 1, bias: false)), ("bn1", nn.BatchNorm2d(c1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(c1, c2, 3, padding: 1, bias: false)), ("bn2", nn.BatchNorm2d(c2)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
            ("conv3", nn.Conv2d(c2, c3, 3, padding: 1, bias: false)), ("bn3", nn.BatchNorm2d(c3)), ("relu3", nn.ReLU()),
            ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(c3, 10)));
    }

    /// <summary>
    /// MobileNet (v1) scaled for 28×28 inputs, width multiplier α on every layer's channels (at least 8): a 3×3 stem of
    /// 32α, then depthwise-separable blocks (depthwise 3×3 + BN + ReLU6, pointwise 1×1 + BN + ReLU6) to 64α (stride 2),
    /// 128α, 128α (stride 2) and 256α, global average pooling, Linear. Every weight is pruned, depthwise ones included.
    /// </summary>
    public static Sequential MobileNetModel(double alpha)
    {
        int C(int channels) => Math.Max(8, (int)Math.Round(channels * alpha));
        return ConvNets.MobileNet(C(32), [(C(64), 2), (C(128), 1), (C(128), 2), (C(256), 1)]);
    }

    private ResultRow Run(string experiment, double width, double sparsity, int seed, Func<Sequential> make, bool asImages)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        torch.manual_seed(seed);
        Sequential model = make();
        var optimizer = SafeOptim.Adam(model.parameters(), 1e-3);
        var plan = new TrainingPlan(StepsPerEpoch * epochs);
        using (var pruner = Training.Pruner(model, plan, sparsity, optimizer))
        {
            var order = new Generator((ulong)seed);
            model.train();
            using var progress = new TrainingProgress($"{experiment} width {width:0.###}, seed {seed}", (train.Count + 127) / 128 * epochs, pruner);
            for (int epoch = 0; epoch < epochs; epoch++)
            {
                using var permutation = torch.randperm(train.Count, generator: order);
                for (long start = 0; start < train.Count; start += 128)
                {
                    using var scope = torch.NewDisposeScope();
                    var idx = permutation.narrow(0, start, Math.Min(128, train.Count - start));
                    Tensor x = train.Images.index_select(0, idx);
                    if (asImages) x = x.reshape(-1, 1, 28, 28);
                    optimizer.zero_grad();
                    Tensor loss = nn.functional.cross_entropy(model.call(x), train.Labels.index_select(0, idx));
                    loss.backward();
                    optimizer.step();
                    pruner?.Step();
                    progress.Step(loss);
                }
            }
            pruner?.Strip();
        }
        double accuracy = test.Accuracy(model, asImages);
        var row = new ResultRow(experiment, sparsity > 0 ? "sparse" : "dense", width, 1 - (double)Training.NonZeroWeights(model) / Training.Weights(model), Training.NonZeroWeights(model), accuracy, seed);
        log($"  {experiment} {row.Model,-6} width {width,-5:0.###} sparsity {row.Sparsity,6:P1} nnz {row.Nnz,9:N0}  accuracy {accuracy:P2}  seed {seed}  ({clock.Elapsed.TotalSeconds:F0} s)");
        return row;
    }
}
