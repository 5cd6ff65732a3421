using Pruning;
using Pruning.Scheduling;
using TorchSharp;
using static TorchSharp.torch;

namespace LargeSparseVsSmallDense.Experiments;

/// <summary>How long to train and where the pruning window sits.</summary>
/// <remarks>
/// The pruning window follows the paper's proportions: pruning starts once the network has trained a little
/// (t0 = 10 % of the steps), the cubic schedule runs over half of training (n·Δt = 50 %), masks are updated about
/// every 1 % of training (Δt), and the last 40 % of training recovers at the final sparsity.
/// </remarks>
public sealed record TrainingPlan(long Steps)
{
    /// <summary>The cubic schedule from 0 to <paramref name="sparsity"/> over this plan.</summary>
    public PolynomialDecaySchedule Schedule(double sparsity)
    {
        long begin = Steps / 10, end = Math.Max(begin + 1, Steps * 6 / 10);
        return new PolynomialDecaySchedule(0, sparsity, begin, end, Math.Max(1, Steps / 100));
    }
}

internal static class Training
{
    /// <summary>The pruner for a sparse run (null for dense): every weight tensor, layer-wise, cubic schedule.</summary>
    public static GradualPruner? Pruner(nn.Module model, TrainingPlan plan, double sparsity, optim.Optimizer optimizer) =>
        sparsity <= 0 ? null : new GradualPruner(model, new PruningOptions { Schedule = plan.Schedule(sparsity) }, optimizer);

    /// <summary>Non-zero entries of every parameter with ≥ 2 dimensions.</summary>
    public static long NonZeroWeights(nn.Module model) =>
        model.parameters().Where(p => p.dim() >= 2).Sum(p => p.count_nonzero().item<long>());

    /// <summary>Entries of every parameter with ≥ 2 dimensions.</summary>
    public static long Weights(nn.Module model) => model.parameters().Where(p => p.dim() >= 2).Sum(p => p.numel());
}
