using Pruning.Criteria;
using Pruning.Masks;
using TorchSharp;
using static TorchSharp.torch;
using static Pruning.Analysis.ModelState;

namespace Pruning.Analysis;

/// <summary>
/// The NetAdapt loop (Yang et al. 2018) that both variants share: each iteration, for every layer, the mildest option
/// that cuts the estimated cost by ΔR (or, if none does, the one that cuts the most) is applied to the model,
/// fine-tuned briefly by the caller and evaluated; the model is restored between proposals; the best proposal is kept.
/// It stops at the budget, or when no layer can be cut further. A variant says what an option is.
/// </summary>
/// <typeparam name="TOption">What a proposal does to one layer (a sparsity, a channel count).</typeparam>
internal abstract class NetAdaptSearch<TOption> : IDisposable
{
    /// <summary>Creates the search over <paramref name="plan"/>'s weights (one mask each, all kept), choosing masks through a session of it.</summary>
    protected NetAdaptSearch(nn.Module model, ResolvedPruning plan) => Session = new MaskSession(model, plan, () => 0);

    /// <summary>Where the kept masks live and proposals choose masks (the plan's policy, its dependency groups) and apply them (coupled rows too).</summary>
    protected MaskSession Session { get; }

    /// <summary>Gains below this fraction of ΔR are measurement noise: without the rule, a run chased a 0.0x µs gain and lost 40 points of accuracy.</summary>
    private const double NoiseFraction = 0.05;

    /// <summary>What the estimates count.</summary>
    protected abstract CostUnit Unit { get; }

    /// <summary>The layers proposals are made for, in model order.</summary>
    protected abstract IEnumerable<string> Layers { get; }

    /// <summary>The layer's options beyond its current state, mildest first, each with the whole model's estimated cost if applied.</summary>
    protected abstract IEnumerable<(TOption Option, double Cost)> Options(string layer);

    /// <summary>Applies the option to the model in place and describes the proposal for the callback.</summary>
    protected abstract NetAdaptProposal Apply(string layer, TOption option);

    /// <summary>Records what the option changes once it is kept (the model and the masks already hold it).</summary>
    protected abstract void Keep(string layer, TOption option);

    /// <summary>The mask each layer's pending proposal would give it.</summary>
    private readonly Dictionary<string, ParameterMask> _proposed = [];

    /// <summary>Holds <paramref name="mask"/> as <paramref name="layer"/>'s pending proposal (replacing an older one).</summary>
    private void Propose(string layer, ParameterMask mask)
    {
        Discard(layer);
        _proposed[layer] = mask;
    }

    /// <summary>
    /// Proposes <paramref name="layer"/> pruned to <paramref name="target"/> on top of its kept mask (already pruned
    /// elements go first) and puts the model in the proposed state: every mask applied, the proposal's in place of the layer's.
    /// </summary>
    protected void ProposeAndApply(string layer, double target)
    {
        ParameterMask kept = Session.Mask(layer);
        var mask = new ParameterMask(layer, kept.Shape);
        try
        {
            var due = new DueWeight(layer, target, kept.Current, mask.NextBuffer());
            Session.Choose([due], 0);
            mask.Replace(due.Keep);
        }
        catch
        {
            mask.Dispose();
            throw;
        }
        Propose(layer, mask);
        Remask(layer);
    }

    /// <summary>Zeroes what every mask prunes (the proposal's for <paramref name="proposedLayer"/>, the kept ones for null), coupled parameters included.</summary>
    protected void Remask(string? proposedLayer)
    {
        using var noGrad = torch.no_grad();
        foreach (ParameterMask kept in Session.Masks) Session.Apply(kept.Name == proposedLayer ? _proposed[kept.Name] : kept, null);
    }

    private void Discard(string layer)
    {
        if (_proposed.Remove(layer, out ParameterMask? mask)) mask.Dispose();
    }

    private void Promote(string layer, TOption option)
    {
        Session.Mask(layer).Replace(_proposed[layer].Current.ToArray());
        Discard(layer);
        Keep(layer, option);
    }

    public void Dispose()
    {
        foreach (ParameterMask mask in _proposed.Values) mask.Dispose();
        _proposed.Clear();
        Session.Dispose();
    }

    /// <summary>The iteration record for a kept option.</summary>
    protected abstract NetAdaptIteration Record(int iteration, string layer, TOption option, Cost cost, double metric, int tried);

    /// <summary>
    /// Runs the loop from the model's <paramref name="dense"/> cost; the result's sparsities and channels are the
    /// variant's (<paramref name="sparsities"/>, <paramref name="channels"/>), read after the last iteration.
    /// </summary>
    public NetAdaptResult Run(nn.Module model, double dense, NetAdaptOptions options, Func<NetAdaptProposal, double> fineTuneAndEvaluate,
        Func<IReadOnlyDictionary<string, double>> sparsities, Func<IReadOnlyDictionary<string, long>>? channels)
    {
        double budget = dense * options.TargetCostFraction, step = dense * options.ReductionPerIteration;
        double current = dense;
        var iterations = new List<NetAdaptIteration>();
        for (int iteration = 1; current > budget + 1e-12 && iteration <= options.MaxIterations; iteration++)
        {
            double goal = Math.Max(budget, current - step);
            Dictionary<string, Tensor>? bestState = null;
            (string Layer, TOption Option, double Cost, double Metric)? best = null;
            int tried = 0;
            var snapshot = Snapshot(model);
            try
            {
                foreach (string layer in Layers)
                {
                    if (Choose(Options(layer), current, goal, step) is not { } pick) continue;
                    NetAdaptProposal proposal = Apply(layer, pick.Option);
                    tried++;
                    double metric = fineTuneAndEvaluate(proposal);
                    if (!double.IsFinite(metric))
                        throw new InvalidOperationException($"The fine-tuning callback returned {metric} for the proposal on '{layer}' ({pick.Option}).");
                    bool better = best is null || (options.Direction == MetricDirection.HigherIsBetter ? metric > best.Value.Metric : metric < best.Value.Metric);
                    if (better)
                    {
                        if (best is { } previous) Discard(previous.Layer);
                        DisposeState(bestState);
                        bestState = Snapshot(model);
                        best = (layer, pick.Option, pick.Cost, metric);
                    }
                    else Discard(layer);
                    Restore(model, snapshot);
                }
            }
            catch
            {
                if (best is { } pending) Discard(pending.Layer);
                DisposeState(bestState);
                throw;
            }
            finally
            {
                DisposeState(snapshot);
            }
            if (best is not { } kept) break;
            Restore(model, bestState!);
            DisposeState(bestState);
            Promote(kept.Layer, kept.Option);
            current = kept.Cost;
            iterations.Add(Record(iteration, kept.Layer, kept.Option, new Cost(current, Unit), kept.Metric, tried));
        }
        return new NetAdaptResult(iterations, sparsities(), channels?.Invoke(), new Cost(dense, Unit), new Cost(current, Unit), new Cost(budget, Unit), current <= budget + 1e-12);
    }

    /// <summary>The mildest option that reaches the goal; if none does, the one with the lowest cost; never one whose gain is noise.</summary>
    private static (TOption Option, double Cost)? Choose(IEnumerable<(TOption Option, double Cost)> mildestFirst, double current, double goal, double step)
    {
        (TOption Option, double Cost)? pick = null;
        foreach (var option in mildestFirst)
        {
            if (option.Cost > current - NoiseFraction * step) continue;
            if (option.Cost <= goal + 1e-12) return option;
            if (pick is null || option.Cost < pick.Value.Cost) pick = option;
        }
        return pick;
    }
}
