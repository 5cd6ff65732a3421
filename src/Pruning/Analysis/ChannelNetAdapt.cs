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
/// NetAdapt with channel pruning and measured dense latencies (<see cref="LatencyTable.MeasureDense"/>): each
/// iteration proposes, per channel layer, the fewest channels to remove (in steps of <c>channelStep</c> times the
/// original count) that cut the table latency by ΔR, counting the layer and the next one, whose inputs shrink with
/// it; removes them by the L1 norm of their filters (with their bias and BatchNorm), lets the caller fine-tune
/// briefly, and keeps the best. On return the model holds the kept channels zeroed; <see cref="SequentialChannels.Shrink"/>
/// then removes them.
/// </summary>
public static class ChannelNetAdapt
{
    /// <summary>Runs channel NetAdapt on <paramref name="model"/>, in place.</summary>
    /// <param name="model">A Sequential that <see cref="SequentialChannels.Analyze"/> accepts.</param>
    /// <param name="table">Latencies of the model's Conv2d and Linear layers, by weight name, at any channel counts.</param>
    /// <param name="fineTuneAndEvaluate">Fine-tunes the proposal briefly (calling <see cref="NetAdaptProposal.Remask"/> after each optimizer step) and returns the metric.</param>
    /// <param name="options">Budget, ΔR and direction.</param>
    /// <param name="channelStep">The granularity of a cut, as a fraction of a layer's original channels (default 1/8).</param>
    /// <exception cref="ArgumentException">The table does not list the model's Conv2d and Linear weights in order.</exception>
    public static NetAdaptResult Run(Sequential model, LatencyTable table, Func<NetAdaptProposal, double> fineTuneAndEvaluate,
        NetAdaptOptions? options = null, double channelStep = 0.125)
    {
        TorchHealth.EnsureOnFirstUse();
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(fineTuneAndEvaluate);
        options ??= new NetAdaptOptions();
        options.Validate();
        if (!(channelStep > 0 && channelStep < 1)) throw new ArgumentOutOfRangeException(nameof(channelStep), channelStep, "Must be in (0, 1).");
        var structure = SequentialChannels.Analyze(model);
        string[] weights = model.named_children().Where(c => c.module is Conv2d or Linear).Select(c => $"{c.name}.weight").ToArray();
        if (!weights.SequenceEqual(table.Layers.Select(l => l.Name)))
            throw new ArgumentException($"The latency table lists [{string.Join(", ", table.Layers.Select(l => l.Name))}]; this model's Conv2d and Linear weights are [{string.Join(", ", weights)}].", nameof(table));

        var layers = structure.Layers.Select(l => (l.Weight, l.Channels)).ToList();
        // Every layer of the table is priced (the output layer too, at its own channels); the channel layers are searched.
        using var search = new Search(model, layers, table.Layers.ToDictionary(l => l.Name, l => l.OutChannels), table.ChannelMilliseconds, structure, channelStep);
        return Finish(model, search, layers, options, fineTuneAndEvaluate);
    }

    /// <summary>
    /// Channel NetAdapt under a FLOPs budget on any model <see cref="ChannelGraph"/> traces, ResNets across their adds
    /// included: each iteration proposes, per dependency group, the fewest channels to remove (in steps of
    /// <paramref name="channelStep"/> times the group's channels) that cut the model's MACs (<see cref="ChannelGraph.Macs(double)"/>)
    /// by ΔR, removes them from every layer of the group (scored as a group), lets the caller fine-tune briefly, and
    /// keeps the best. The result's latencies are MACs. On return the model holds the removed channels zeroed;
    /// <see cref="ChannelGraph.ShrinkInPlace"/> then removes them.
    /// </summary>
    /// <param name="model">The model <paramref name="graph"/> was traced from.</param>
    /// <param name="graph">Its dependency groups.</param>
    /// <param name="fineTuneAndEvaluate">Fine-tunes the proposal briefly (calling <see cref="NetAdaptProposal.Remask"/> after each optimizer step) and returns the metric.</param>
    /// <param name="options">Budget (a fraction of the dense MACs), ΔR and direction.</param>
    /// <param name="channelStep">The granularity of a cut, as a fraction of a group's original channels (default 1/8).</param>
    public static NetAdaptResult Run(nn.Module model, ChannelGraph graph, Func<NetAdaptProposal, double> fineTuneAndEvaluate,
        NetAdaptOptions? options = null, double channelStep = 0.125)
    {
        TorchHealth.EnsureOnFirstUse();
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(graph);
        ArgumentNullException.ThrowIfNull(fineTuneAndEvaluate);
        options ??= new NetAdaptOptions();
        options.Validate();
        if (!(channelStep > 0 && channelStep < 1)) throw new ArgumentOutOfRangeException(nameof(channelStep), channelStep, "Must be in (0, 1).");
        if (graph.Groups.Count == 0) throw new ArgumentException("The graph has no channel group to prune.", nameof(graph));
        foreach (string weight in graph.Weights.Concat(graph.Groups.SelectMany(g => graph.CoupledWith(g.Weight))))
            if (model.get_parameter(weight) is null)
                throw new ArgumentException($"The graph names '{weight}', which this model does not have: was it traced from another model?", nameof(graph));
        var layers = graph.Groups.Select(g => (g.Weight, g.Channels)).ToList();
        using var search = new Search(model, layers, layers.ToDictionary(l => l.Weight, l => l.Channels), kept => graph.Macs(kept), graph, channelStep);
        return Finish(model, search, layers, options, fineTuneAndEvaluate);
    }

    private static NetAdaptResult Finish(nn.Module model, Search search, List<(string Weight, long Channels)> layers, NetAdaptOptions options,
        Func<NetAdaptProposal, double> fineTuneAndEvaluate)
    {
        double dense = search.Latency(search.Kept);
        var (iterations, latency, budget) = search.Run(model, dense, options, fineTuneAndEvaluate);
        var sparsities = layers.ToDictionary(l => l.Weight, l => 1 - (double)search.Kept[l.Weight] / l.Channels);
        return new NetAdaptResult(iterations, sparsities, new Dictionary<string, long>(search.Kept), dense, latency, budget, latency <= budget + 1e-12);
    }

    /// <summary>Options are channel counts below a layer's (or group's) current one, in steps; a layer's mask keeps or prunes whole rows.</summary>
    private sealed class Search : NetAdaptSearch<long>
    {
        private static readonly IPruningCriterion Magnitude = new MagnitudeCriterion();
        private readonly nn.Module _model;
        private readonly Dictionary<string, long> _channels;
        private readonly Func<IReadOnlyDictionary<string, long>, double> _cost;
        private readonly ChannelStructure _structure;
        private readonly double _channelStep;

        public Search(nn.Module model, List<(string Weight, long Channels)> layers, Dictionary<string, long> priced,
            Func<IReadOnlyDictionary<string, long>, double> cost, ChannelStructure structure, double channelStep)
        {
            (_model, _cost, _structure, _channelStep) = (model, cost, structure, channelStep);
            _channels = layers.ToDictionary(l => l.Weight, l => l.Channels);
            Kept = priced;
            foreach (var (weight, _) in layers) Masks[weight] = new ParameterMask(weight, model.get_parameter(weight)!.shape);
        }

        /// <summary>Channels kept per priced layer (or group), by weight.</summary>
        public Dictionary<string, long> Kept { get; }

        public double Latency(IReadOnlyDictionary<string, long> channels) => _cost(channels);

        protected override IEnumerable<string> Layers => _channels.Keys;

        protected override IEnumerable<(long Option, double Latency)> Options(string layer)
        {
            long cut = Math.Max(1, (long)Math.Round(_channels[layer] * _channelStep));
            for (long c = Kept[layer] - cut; c >= 1; c -= cut)
                yield return (c, Latency(new Dictionary<string, long>(Kept) { [layer] = c }));
        }

        /// <summary>Zeroes all but <paramref name="keep"/> channels (smallest L1 filter norms first, a group's filters scored together, already-removed ones first of all).</summary>
        protected override NetAdaptProposal Apply(string layer, long keep)
        {
            double removed = 1 - (double)keep / _channels[layer];
            var scoredWith = _structure.ScoredWith(layer, _model);
            Propose(layer, ScoredMask.Select(Magnitude, layer, _model.get_parameter(layer)!, scoredWith, removed, PruningGranularity.OutputChannels(), Masks[layer].Current, "in channel NetAdapt"));
            Remask(layer);
            return new NetAdaptProposal(_model, layer, removed, keep, () => Remask(layer));
        }

        /// <summary>Zeroes every removed channel: its filters (every layer of its group), biases, BatchNorm scales and shifts.</summary>
        private void Remask(string proposedLayer)
        {
            using var noGrad = torch.no_grad();
            foreach (string name in Masks.Keys)
            {
                ParameterMask mask = MaskUnder(name, proposedLayer);
                mask.Apply(_model.get_parameter(name)!, null);
                mask.ApplyToRows(_structure.CoupledWith(name).Select(c => _model.get_parameter(c)!), null);
            }
        }

        protected override void Keep(string layer, long channels) => Kept[layer] = channels;

        protected override NetAdaptIteration Record(int iteration, string layer, long channels, double latency, double metric, int tried) =>
            new(iteration, layer, 1 - (double)channels / _channels[layer], channels, latency, metric, tried);
    }
}
