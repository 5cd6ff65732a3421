using System.Globalization;
using System.Text;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static Pruning.Analysis.ModelState;

namespace Pruning.Analysis;

/// <summary>What NetAdapt aims for and how it steps.</summary>
public sealed class NetAdaptOptions
{
    /// <summary>The latency budget as a fraction of the dense model's (table) latency, e.g. 0.5. In (0, 1].</summary>
    public double TargetLatencyFraction { get; init; } = 0.5;

    /// <summary>The latency cut each iteration aims for (ΔR), as a fraction of the dense latency, e.g. 0.1. In (0, 1].</summary>
    public double ReductionPerIteration { get; init; } = 0.1;

    /// <summary>The metric's direction.</summary>
    public MetricDirection Direction { get; init; } = MetricDirection.HigherIsBetter;

    /// <summary>A bound on iterations (default 100).</summary>
    public int MaxIterations { get; init; } = 100;
}

/// <summary>What the short-term fine-tuning callback gets for one NetAdapt proposal.</summary>
public sealed class NetAdaptProposal
{
    private readonly IReadOnlyDictionary<string, Tensor> _masks;

    internal NetAdaptProposal(nn.Module model, string layer, double sparsity, IReadOnlyDictionary<string, Tensor> masks)
    {
        Model = model;
        Layer = layer;
        Sparsity = sparsity;
        _masks = masks;
    }

    /// <summary>The model, with this proposal's layer pruned.</summary>
    public nn.Module Model { get; }

    /// <summary>The layer this proposal prunes further.</summary>
    public string Layer { get; }

    /// <summary>The proposal's sparsity for <see cref="Layer"/>.</summary>
    public double Sparsity { get; }

    /// <summary>Re-applies every layer's mask; call it after each optimizer step so fine-tuning cannot revive pruned weights.</summary>
    public void Remask()
    {
        using var _ = torch.no_grad();
        foreach (var (name, mask) in _masks) Model.get_parameter(name)!.mul_(mask);
    }
}

/// <summary>One NetAdapt iteration: the proposal kept and what it measured.</summary>
public sealed record NetAdaptIteration(int Iteration, string Layer, double Sparsity, double LatencyMilliseconds, double Metric, int ProposalsTried);

/// <summary>The outcome of <see cref="NetAdapt.Run"/>.</summary>
public sealed record NetAdaptResult(
    IReadOnlyList<NetAdaptIteration> Iterations,
    IReadOnlyDictionary<string, double> Sparsities,
    double DenseLatencyMilliseconds,
    double LatencyMilliseconds,
    double BudgetMilliseconds,
    bool BudgetMet)
{
    /// <summary>The iteration table.</summary>
    public override string ToString()
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"dense latency {DenseLatencyMilliseconds * 1000:F1} µs, budget {BudgetMilliseconds * 1000:F1} µs");
        text.AppendLine("iter  layer                 sparsity   latency µs      metric  proposals");
        foreach (var it in Iterations)
            text.AppendLine(CultureInfo.InvariantCulture, $"{it.Iteration,4}  {it.Layer,-20}  {it.Sparsity,8:P1}  {it.LatencyMilliseconds * 1000,11:F1}  {it.Metric,10:G5}  {it.ProposalsTried,9}");
        text.Append(BudgetMet ? "budget met" : "budget NOT met: no layer can be pruned further within the measured candidates");
        return text.ToString();
    }
}

/// <summary>
/// NetAdapt (Yang et al. 2018) with measured latency: each iteration, for every layer, the smallest candidate
/// sparsity that cuts the estimated latency (from a <see cref="LatencyTable"/> of real timings) by ΔR is proposed;
/// each proposal is pruned (magnitude, on top of the masks so far), fine-tuned briefly by the caller's callback and
/// evaluated; the best proposal is kept. It stops when the latency budget is met. Long-term fine-tuning is the
/// caller's: train with a pruner holding <see cref="NetAdaptResult.Sparsities"/> as per-layer targets.
/// </summary>
public static class NetAdapt
{
    /// <summary>
    /// Runs NetAdapt on <paramref name="model"/>, in place. <paramref name="fineTuneAndEvaluate"/> receives each
    /// proposal, fine-tunes it for a few steps (calling <see cref="NetAdaptProposal.Remask"/> after each optimizer
    /// step) and returns the metric. On return the model holds the last kept proposal, with its masks applied.
    /// </summary>
    public static NetAdaptResult Run(nn.Module model, LatencyTable table, Func<NetAdaptProposal, double> fineTuneAndEvaluate, NetAdaptOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(fineTuneAndEvaluate);
        options ??= new NetAdaptOptions();
        if (!(options.TargetLatencyFraction > 0 && options.TargetLatencyFraction <= 1))
            throw new ArgumentOutOfRangeException(nameof(options), options.TargetLatencyFraction, "TargetLatencyFraction must be in (0, 1].");
        if (!(options.ReductionPerIteration > 0 && options.ReductionPerIteration <= 1))
            throw new ArgumentOutOfRangeException(nameof(options), options.ReductionPerIteration, "ReductionPerIteration must be in (0, 1].");
        foreach (string name in table.Layers)
            if (model.get_parameter(name) is null)
                throw new ArgumentException($"The latency table names '{name}', which the model does not have.", nameof(table));

        var sparsities = table.Layers.ToDictionary(n => n, _ => 0.0);
        var masks = table.Layers.ToDictionary(n => n, n => (Tensor)torch.ones_like(model.get_parameter(n)!));
        double dense = table.Milliseconds(sparsities), budget = dense * options.TargetLatencyFraction, step = dense * options.ReductionPerIteration;
        double current = dense;
        var iterations = new List<NetAdaptIteration>();
        try
        {
            for (int iteration = 1; current > budget + 1e-12 && iteration <= options.MaxIterations; iteration++)
            {
                double goal = Math.Max(budget, current - step);
                Dictionary<string, Tensor>? bestState = null;
                (string Layer, double Sparsity, double Latency, double Metric, Tensor Mask)? best = null;
                int tried = 0;
                var snapshot = Snapshot(model);
                try
                {
                    foreach (string layer in table.Layers)
                    {
                        double others = current - table.Milliseconds(layer, sparsities[layer]);
                        // The smallest candidate that reaches the goal; if none does, the one that cuts the most.
                        var candidates = table.Candidates(layer).Where(c => c.Sparsity > sparsities[layer] + 1e-12).ToArray();
                        if (candidates.Length == 0) continue;
                        var reaching = candidates.Where(c => others + c.Milliseconds <= goal + 1e-12).ToArray();
                        var pick = reaching.Length > 0 ? reaching[0] : candidates.MinBy(c => c.Milliseconds);
                        // A gain below 5 % of ΔR is measurement noise, not worth a proposal (it would cost accuracy for nothing).
                        if (others + pick.Milliseconds > current - 0.05 * step) continue;

                        Tensor mask = Prune(model, layer, pick.Sparsity, masks);
                        var proposalMasks = new Dictionary<string, Tensor>(masks) { [layer] = mask };
                        tried++;
                        double metric = fineTuneAndEvaluate(new NetAdaptProposal(model, layer, pick.Sparsity, proposalMasks));
                        if (!double.IsFinite(metric)) throw new InvalidOperationException($"The fine-tuning callback returned {metric} for '{layer}' at {pick.Sparsity:P1}.");
                        bool better = best is null || (options.Direction == MetricDirection.HigherIsBetter ? metric > best.Value.Metric : metric < best.Value.Metric);
                        if (better)
                        {
                            DisposeState(bestState);
                            best?.Mask.Dispose();
                            bestState = Snapshot(model);
                            best = (layer, pick.Sparsity, others + pick.Milliseconds, metric, mask);
                        }
                        else mask.Dispose();
                        Restore(model, snapshot);
                    }
                }
                finally
                {
                    DisposeState(snapshot);
                }
                if (best is not { } kept) break;   // nothing can be pruned further: budget not met
                Restore(model, bestState!);
                DisposeState(bestState);
                masks[kept.Layer].Dispose();
                masks[kept.Layer] = kept.Mask;
                sparsities[kept.Layer] = kept.Sparsity;
                current = kept.Latency;
                iterations.Add(new NetAdaptIteration(iteration, kept.Layer, kept.Sparsity, current, kept.Metric, tried));
            }
            return new NetAdaptResult(iterations, sparsities, dense, current, budget, current <= budget + 1e-12);
        }
        finally
        {
            foreach (Tensor mask in masks.Values) mask.Dispose();
        }
    }

    /// <summary>Magnitude-prunes <paramref name="layer"/> to exactly round(s·n) zeros (pruned weights first, ties by index), keeping the other masks.</summary>
    private static Tensor Prune(nn.Module model, string layer, double sparsity, IReadOnlyDictionary<string, Tensor> masks)
    {
        using var _ = torch.no_grad();
        Parameter weight = model.get_parameter(layer)!;
        foreach (var (name, m) in masks) model.get_parameter(name)!.mul_(m);
        long n = weight.numel(), k = (long)Math.Round(sparsity * n, MidpointRounding.ToEven);
        k = Math.Min(k, n - 1);
        using var scores = weight.detach().abs().flatten();
        var (sortedValues, order) = scores.sort(stable: true);
        using var __ = sortedValues;
        using var ___ = order;
        var mask = torch.ones(n);
        if (k > 0)
        {
            using var drop = order.narrow(0, 0, k);
            mask.index_fill_(0, drop, 0f);
        }
        Tensor shaped = mask.reshape(weight.shape);
        weight.mul_(shaped);
        return shaped;
    }
}
