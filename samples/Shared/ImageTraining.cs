using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Samples;

/// <summary>The samples' image-classifier training loop.</summary>
public static class ImageTraining
{
    /// <summary>
    /// Adam at <paramref name="rate"/> on <paramref name="steps"/> random batches of <paramref name="data"/> as N×1×28×28
    /// images, drawn by a generator seeded with <paramref name="generatorSeed"/>; the pruner, if any, steps after each
    /// update. Leaves the model in eval mode; shows its progress (<see cref="TrainingProgress"/>) as <paramref name="label"/>.
    /// </summary>
    public static void Train(Sequential model, FashionMnist data, long steps, double rate, GradualPruner? pruner, ulong generatorSeed, int batchSize = 128, string label = "training")
    {
        model.train();
        var optimizer = Pruning.Optimizers.SafeOptim.Adam(model.parameters(), rate);
        var g = new Generator(generatorSeed);
        using var progress = new TrainingProgress(label, steps, pruner);
        for (long step = 0; step < steps; step++)
        {
            using var scope = torch.NewDisposeScope();
            Tensor idx = torch.randint(0, data.Count, [batchSize], ScalarType.Int64, generator: g);
            optimizer.zero_grad();
            Tensor loss = nn.functional.cross_entropy(model.call(data.Images.index_select(0, idx).reshape(-1, 1, 28, 28)), data.Labels.index_select(0, idx));
            loss.backward();
            optimizer.step();
            pruner?.Step();
            progress.Step(loss);
        }
        model.eval();
    }
}
