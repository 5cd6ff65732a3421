using Pruning.Criteria;
using Pruning.Grouping;
using Pruning.Interop;
using Pruning.Masks;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Analysis;

/// <summary>
/// NetAdapt (Yang et al. 2018) with measured latency: each iteration, for every layer, the smallest candidate
/// sparsity that cuts the estimated latency (from a <see cref="LatencyTable"/> of real timings) by ΔR is proposed;
/// each proposal is magnitude-pruned on top of the masks so far, fine-tuned briefly by the caller's callback and
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
    /// <exception cref="ArgumentException">The table names a weight the model does not have.</exception>
    public static NetAdaptResult Run(nn.Module model, LatencyTable table, Func<NetAdaptProposal, double> fineTuneAndEvaluate, NetAdaptOptions? options = null)
    {
        TorchHealth.EnsureOnFirstUse();
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(fineTuneAndEvaluate);
        options ??= new NetAdaptOptions();
        options.Validate();
        foreach (LatencyLayer layer in table.Layers)
            if (model.get_parameter(layer.Name) is null)
                throw new ArgumentException($"The latency table names '{layer.Name}', which the model does not have.", nameof(table));

        using var search = new Search(model, table, PruningOptions.ForProbes(model, table.Layers.Select(l => l.Name), PruningGranularity.Element));
        double dense = table.Milliseconds(table.Layers.ToDictionary(l => l.Name, _ => 0.0));
        return search.Run(model, dense, options, fineTuneAndEvaluate, () => new Dictionary<string, double>(search.Sparsities), null);
    }

    /// <summary>Options are the table's measured sparsities above a layer's current one; proposals are magnitude masks.</summary>
    private sealed class Search : NetAdaptSearch<double>
    {
        private readonly nn.Module _model;
        private readonly LatencyTable _table;

        public Search(nn.Module model, LatencyTable table, ResolvedPruning plan) : base(model, plan)
        {
            (_model, _table) = (model, table);
            Sparsities = table.Layers.ToDictionary(l => l.Name, _ => 0.0);
        }

        public Dictionary<string, double> Sparsities { get; }

        protected override CostUnit Unit => CostUnit.Milliseconds;

        protected override IEnumerable<string> Layers => _table.Layers.Select(l => l.Name);

        protected override IEnumerable<(double Option, double Cost)> Options(string layer)
        {
            double others = _table.Milliseconds(Sparsities) - _table.Milliseconds(layer, Sparsities[layer]);
            return _table.Candidates(layer).Where(c => c.Sparsity > Sparsities[layer] + 1e-12).Select(c => (c.Sparsity, others + c.Milliseconds));
        }

        /// <summary>Magnitude-prunes the layer to exactly round(s·n) zeros, already pruned weights first, keeping the other masks.</summary>
        protected override NetAdaptProposal Apply(string layer, double sparsity)
        {
            // The kept masks first: the proposal's scores see the model as the search left it.
            Remask(null);
            ProposeAndApply(layer, sparsity);
            return new NetAdaptProposal(_model, layer, sparsity, null, () => Remask(layer));
        }

        protected override void Keep(string layer, double sparsity) => Sparsities[layer] = sparsity;

        protected override NetAdaptIteration Record(int iteration, string layer, double sparsity, Cost cost, double metric, int tried) =>
            new(iteration, layer, sparsity, null, cost, metric, tried);
    }
}
