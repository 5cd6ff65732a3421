using Pruning.Criteria;
using Pruning.Grouping;
using Pruning.Interop;
using Pruning.Masks;
using Pruning.Structure;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Analysis;

/// <summary>
/// NetAdapt with channel pruning over the dependency groups of any model <see cref="ChannelGraph"/> traces (ResNets
/// across their adds included): each iteration proposes, per group, the fewest channels to remove (in steps of
/// <c>channelStep</c> times the group's channels) that cut the cost by ΔR, removes them from every layer of the group
/// by the L1 norm of their filters (scored as a group, with biases, BatchNorms and depthwise filters), lets the caller
/// fine-tune briefly, and keeps the best. The cost is measured latency (<see cref="LatencyTable.MeasureDense"/>) or
/// MACs. On return the model holds the removed channels zeroed; <see cref="ChannelGraph.ShrinkInPlace"/> then removes them.
/// </summary>
public static class ChannelNetAdapt
{
    /// <summary>Channel NetAdapt on measured latency: every Conv2d and Linear priced by <paramref name="table"/> at the channel counts a proposal leaves it.</summary>
    /// <param name="model">The model <paramref name="graph"/> was traced from.</param>
    /// <param name="graph">Its dependency groups.</param>
    /// <param name="table">Latencies of the model's Conv2d and Linear layers, by weight name, at any channel counts (<see cref="LatencyTable.MeasureDense"/>).</param>
    /// <param name="fineTuneAndEvaluate">Fine-tunes the proposal briefly (calling <see cref="NetAdaptProposal.Remask"/> after each optimizer step) and returns the metric.</param>
    /// <param name="options">Budget (a fraction of the dense latency), ΔR and direction.</param>
    /// <param name="channelStep">The granularity of a cut, as a fraction of a group's original channels (default 1/8).</param>
    /// <exception cref="ArgumentException">The table does not list the model's Conv2d and Linear weights, or the graph is of another model.</exception>
    public static NetAdaptResult Run(nn.Module model, ChannelGraph graph, LatencyTable table, Func<NetAdaptProposal, double> fineTuneAndEvaluate,
        NetAdaptOptions? options = null, double channelStep = 0.125)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(graph);
        table.CheckCovers(graph, nameof(table));
        return Run(model, graph, kept => table.ChannelMilliseconds(graph, kept), CostUnit.Milliseconds, fineTuneAndEvaluate, options, channelStep);
    }

    /// <summary>Channel NetAdapt under a FLOPs budget: the cost is the model's MACs (<see cref="ChannelGraph.Macs(double)"/>; the result's costs are in <see cref="CostUnit.Macs"/>).</summary>
    /// <param name="model">The model <paramref name="graph"/> was traced from.</param>
    /// <param name="graph">Its dependency groups.</param>
    /// <param name="fineTuneAndEvaluate">Fine-tunes the proposal briefly (calling <see cref="NetAdaptProposal.Remask"/> after each optimizer step) and returns the metric.</param>
    /// <param name="options">Budget (a fraction of the dense MACs), ΔR and direction.</param>
    /// <param name="channelStep">The granularity of a cut, as a fraction of a group's original channels (default 1/8).</param>
    public static NetAdaptResult Run(nn.Module model, ChannelGraph graph, Func<NetAdaptProposal, double> fineTuneAndEvaluate,
        NetAdaptOptions? options = null, double channelStep = 0.125)
    {
        ArgumentNullException.ThrowIfNull(graph);
        return Run(model, graph, kept => graph.Macs(kept), CostUnit.Macs, fineTuneAndEvaluate, options, channelStep);
    }

    private static NetAdaptResult Run(nn.Module model, ChannelGraph graph, Func<IReadOnlyDictionary<string, long>, double> cost, CostUnit unit,
        Func<NetAdaptProposal, double> fineTuneAndEvaluate, NetAdaptOptions? options, double channelStep)
    {
        TorchHealth.EnsureOnFirstUse();
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(fineTuneAndEvaluate);
        options ??= new NetAdaptOptions();
        options.Validate();
        if (!(channelStep > 0 && channelStep < 1)) throw new ArgumentOutOfRangeException(nameof(channelStep), channelStep, "Must be in (0, 1).");
        if (graph.Groups.Count == 0) throw new ArgumentException("The graph has no channel group to prune.", nameof(graph));
        foreach (string weight in graph.Weights.Concat(graph.Groups.SelectMany(g => graph.CoupledWith(g.Weight))))
            if (model.get_parameter(weight) is null)
                throw new ArgumentException($"The graph names '{weight}', which this model does not have: was it traced from another model?", nameof(graph));
        var layers = graph.Groups.Select(g => (g.Weight, g.Channels)).ToList();
        var plan = PruningOptions.ForProbes(model, layers.Select(l => l.Weight), PruningGranularity.OutputChannels(), graph);
        using var search = new Search(model, plan, layers, cost, unit, channelStep);
        return search.Run(model, search.Estimate(search.Kept), options, fineTuneAndEvaluate,
            () => layers.ToDictionary(l => l.Weight, l => 1 - (double)search.Kept[l.Weight] / l.Channels), () => new Dictionary<string, long>(search.Kept));
    }

    /// <summary>
    /// Options are channel counts below a layer's (or group's) current one, in steps; a layer's mask keeps or prunes
    /// whole rows, chosen by the L1 norm of its filters (a group's scored together), and zeroes the channel everywhere
    /// the plan's groups say (biases, BatchNorms, the group's other layers).
    /// </summary>
    private sealed class Search : NetAdaptSearch<long>
    {
        private readonly nn.Module _model;
        private readonly Dictionary<string, long> _channels;
        private readonly Func<IReadOnlyDictionary<string, long>, double> _cost;
        private readonly CostUnit _unit;
        private readonly double _channelStep;

        public Search(nn.Module model, ResolvedPruning plan, List<(string Weight, long Channels)> layers,
            Func<IReadOnlyDictionary<string, long>, double> cost, CostUnit unit, double channelStep) : base(model, plan)
        {
            (_model, _cost, _unit, _channelStep) = (model, cost, unit, channelStep);
            _channels = layers.ToDictionary(l => l.Weight, l => l.Channels);
            Kept = layers.ToDictionary(l => l.Weight, l => l.Channels);
        }

        /// <summary>Channels kept per priced layer (or group), by weight.</summary>
        public Dictionary<string, long> Kept { get; }

        /// <summary>The model's cost when each priced layer (or group) keeps <paramref name="channels"/>.</summary>
        public double Estimate(IReadOnlyDictionary<string, long> channels) => _cost(channels);

        protected override CostUnit Unit => _unit;

        protected override IEnumerable<string> Layers => _channels.Keys;

        protected override IEnumerable<(long Option, double Cost)> Options(string layer)
        {
            long cut = Math.Max(1, (long)Math.Round(_channels[layer] * _channelStep));
            for (long c = Kept[layer] - cut; c >= 1; c -= cut)
                yield return (c, Estimate(new Dictionary<string, long>(Kept) { [layer] = c }));
        }

        /// <summary>Zeroes all but <paramref name="keep"/> channels (smallest L1 filter norms first, a group's filters scored together, already-removed ones first of all).</summary>
        protected override NetAdaptProposal Apply(string layer, long keep)
        {
            double removed = 1 - (double)keep / _channels[layer];
            ProposeAndApply(layer, removed);
            return new NetAdaptProposal(_model, layer, removed, keep, () => Remask(layer));
        }

        protected override void Keep(string layer, long channels) => Kept[layer] = channels;

        protected override NetAdaptIteration Record(int iteration, string layer, long channels, Cost cost, double metric, int tried) =>
            new(iteration, layer, 1 - (double)channels / _channels[layer], channels, cost, metric, tried);
    }
}
