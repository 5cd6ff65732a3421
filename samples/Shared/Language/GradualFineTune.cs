using Pruning.Optimizers;
using Pruning.Scheduling;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Samples.Language;

/// <summary>The language-model samples' pruning run: a copy of the dense model fine-tuned while a gradual pruner takes it to the target.</summary>
internal static class GradualFineTune
{
    /// <summary>
    /// Copies <paramref name="dense"/>'s weights into <paramref name="model"/>, then fine-tunes it for
    /// <paramref name="epochs"/> epochs of <paramref name="stepsPerEpoch"/> steps (each epoch run by
    /// <paramref name="epoch"/>) while the cubic schedule prunes to <paramref name="sparsity"/> over the first 70 %.
    /// </summary>
    public static T Prune<T>(T model, nn.Module dense, double sparsity, long stepsPerEpoch, int epochs, double learningRate,
        Action<T, optim.Optimizer, GradualPruner, int> epoch) where T : nn.Module
    {
        using (torch.no_grad())
            foreach (var ((_, to), (_, from)) in model.named_parameters().Zip(dense.named_parameters())) to.copy_(from);
        var optimizer = SafeOptim.Adam(model.parameters(), learningRate);
        long end = Math.Max(1, stepsPerEpoch * epochs * 7 / 10);
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new PolynomialDecaySchedule(0, sparsity, 0, end, Math.Max(1, end / 20)) }, optimizer);
        for (int e = 0; e < epochs; e++) epoch(model, optimizer, pruner, e);
        Console.WriteLine($"Pruned to {sparsity:P0}: {pruner.Strip().Sparsity:P2} of the pruned weights are zero.");
        return model;
    }
}
