using Pruning.Grouping;
using Pruning.Masks;
using Pruning.Structure;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Analysis.Amc;

/// <summary>One searched layer, as the state encodes it.</summary>
/// <param name="Weight">The weight the action prunes (channel mode: the producer's).</param>
/// <param name="Conv">Whether it is a convolution.</param>
/// <param name="InChannels">Input channels or features.</param>
/// <param name="OutChannels">Output channels or features.</param>
/// <param name="Kernel">Kernel height × width (1 for a matrix).</param>
/// <param name="Stride">Stride (1 for a matrix).</param>
/// <param name="Size">Elements (fine mode) or dense FLOPs (channel mode): the layer's share of the model.</param>
/// <param name="Units">What a ratio counts: elements (fine) or output channels (channel).</param>
internal sealed record AmcLayer(string Weight, bool Conv, long InChannels, long OutChannels, long Kernel, long Stride, double Size, long Units);

/// <summary>
/// The environment of an AMC search: the searched layers, the resource a policy keeps, the budget clip, the state
/// vector, and applying a policy to the model (then putting the dense weights back).
/// </summary>
internal sealed class AmcEnvironment : IDisposable
{
    /// <summary>Features per state: index, conv?, in, out, kernel, stride, size, reduced, rest, previous action.</summary>
    public const int StateSize = 10;

    private readonly nn.Module _model;
    private readonly AmcOptions _options;
    private readonly ChannelGraph? _graph;  // channel mode: the dependency groups searched
    private readonly Dictionary<string, Tensor> _dense;
    private readonly double[,] _static;
    private readonly MaskSession _session;

    public AmcEnvironment(nn.Module model, AmcOptions options)
    {
        _model = model;
        _options = options;
        Layers = options.Mode == AmcMode.Fine ? FineLayers(model, options) : ChannelLayers(model, options, out _graph);
        if (Layers.Count == 0) throw new ArgumentException("The model has no layer to search.", nameof(model));
        MaxUnits = Layers.Select(l => Math.Min(Quantize(l, options.EffectiveMaxRatio), l.Units - 1)).ToArray();
        MinUnits = Layers.Select((l, i) => Math.Min(Quantize(l, options.MinRatio), MaxUnits[i])).ToArray();
        Dense = Resource(new long[Layers.Count]);
        if (!(Dense > 0)) throw new ArgumentException("The searched layers hold no resource to prune.", nameof(model));
        double floor = Resource(MaxUnits) / Dense;
        if (floor > options.Budget + 1e-12)
            throw new ArgumentException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"AmcOptions.Budget {options.Budget:P2} is unreachable: pruning every searched layer at the largest ratio ({options.EffectiveMaxRatio:P0}) keeps {floor:P2} of the {options.Resource}. Raise the budget or MaxRatio."), "options");
        // Static features, min-max normalized over the layers as in the paper.
        double[][] raw = Layers.Select((l, t) => new double[] { t, l.Conv ? 1 : 0, l.InChannels, l.OutChannels, l.Kernel, l.Stride, l.Size }).ToArray();
        _static = new double[Layers.Count, 7];
        for (int f = 0; f < 7; f++)
        {
            double min = raw.Min(r => r[f]), max = raw.Max(r => r[f]);
            for (int t = 0; t < Layers.Count; t++) _static[t, f] = max > min ? (raw[t][f] - min) / (max - min) : 0;
        }
        _session = new MaskSession(model, options.Plan(model, Layers.Select(l => l.Weight).ToList(), _graph), () => 0);
        _dense = ModelState.Snapshot(model);
    }

    public IReadOnlyList<AmcLayer> Layers { get; }

    /// <summary>The dense model's resource.</summary>
    public double Dense { get; }

    /// <summary>Per layer, the most and fewest units an action may prune.</summary>
    public long[] MaxUnits { get; }

    public long[] MinUnits { get; }

    /// <summary>Units pruned at ratio <paramref name="ratio"/>: round(r·units), as the selection engine counts.</summary>
    public static long Quantize(AmcLayer layer, double ratio) => Selection.MaskSelector.PrunedCount(ratio, layer.Units);

    /// <summary>The resource kept when layer t prunes <paramref name="pruned"/>[t] units (absolute, e.g. non-zeros or MACs).</summary>
    public double Resource(IReadOnlyList<long> pruned)
    {
        switch (_options.Resource)
        {
            case AmcResource.NonZeros:
                return Layers.Select((l, t) => (double)(l.Units - pruned[t])).Sum();
            case AmcResource.Latency when _options.Mode == AmcMode.Fine:
                return _options.Latency!.Milliseconds(Layers.Select((l, t) => (l.Weight, (double)pruned[t] / l.Units)).ToDictionary(p => p.Weight, p => p.Item2));
            default:
                var kept = Layers.Select((l, t) => (l.Weight, l.Units - pruned[t])).ToDictionary(p => p.Weight, p => p.Item2);
                return _options.Resource == AmcResource.Latency ? _options.Latency!.ChannelMilliseconds(_graph!, kept) : _graph!.Macs(kept);
        }
    }

    /// <summary>
    /// The budget clip (the paper's resource-constrained action space): the smallest number of units layer t must
    /// prune so that, with the layers before it as chosen and every layer after it at its most, the budget is still
    /// met; the action is raised to it. Returns units pruned.
    /// </summary>
    public long Clip(int t, double ratio, IReadOnlyList<long> chosen)
    {
        long units = Math.Clamp(Quantize(Layers[t], ratio), MinUnits[t], MaxUnits[t]);
        var trial = new long[Layers.Count];
        for (int i = 0; i < t; i++) trial[i] = chosen[i];
        for (int i = t + 1; i < Layers.Count; i++) trial[i] = MaxUnits[i];
        double budget = _options.Budget * Dense * (1 + 1e-12);
        bool Fits(long u)
        {
            trial[t] = u;
            return Resource(trial) <= budget;
        }
        if (Fits(units)) return units;
        long low = units, high = MaxUnits[t]; // Fits(high) holds: the clip at earlier layers guaranteed it
        while (high - low > 1)
        {
            long mid = low + (high - low) / 2;
            if (Fits(mid)) high = mid; else low = mid;
        }
        return high;
    }

    /// <summary>The state of layer t with the layers before it pruned as <paramref name="chosen"/>.</summary>
    public float[] State(int t, IReadOnlyList<long> chosen)
    {
        var state = new float[StateSize];
        if (t >= Layers.Count) return state; // the terminal state
        for (int f = 0; f < 7; f++) state[f] = (float)_static[t, f];
        var partial = new long[Layers.Count];
        for (int i = 0; i < t; i++) partial[i] = chosen[i];
        state[7] = (float)((Dense - Resource(partial)) / Dense);                       // resources already removed
        state[8] = (float)(Layers.Skip(t + 1).Sum(l => l.Size) / Layers.Sum(l => l.Size)); // resources in the layers after t
        state[9] = t == 0 ? 0 : (float)((double)chosen[t - 1] / Layers[t - 1].Units);  // the previous action
        return state;
    }

    /// <summary>
    /// Prunes the model to the agent's actions (units per layer) through the mask session (the criterion's scores, or
    /// the mask policy), runs <paramref name="evaluate"/> (which may fine-tune), and restores the whole model.
    /// </summary>
    public double Evaluate(IReadOnlyList<long> pruned, Func<nn.Module, double> evaluate)
    {
        try
        {
            var ratios = Layers.Select((l, t) => (l.Weight, Pruned: pruned[t], l.Units)).Where(l => l.Pruned > 0)
                .ToDictionary(l => l.Weight, l => (double)l.Pruned / l.Units);
            _session.Prune(ratios);   // the finally below restores the whole model, which the evaluation may have trained
            double metric = evaluate(_model);
            if (!double.IsFinite(metric)) throw new InvalidOperationException($"The evaluation returned {metric}; AMC needs a finite metric.");
            return metric;
        }
        finally
        {
            ModelState.Restore(_model, _dense);
        }
    }

    private static IReadOnlyList<AmcLayer> FineLayers(nn.Module model, AmcOptions options)
    {
        IReadOnlyList<string> names;
        try
        {
            names = options.Targets.Resolve(model);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"AmcOptions.Targets: {e.Bare()}", "options", e);
        }
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        return names.Select(name =>
        {
            long[] shape = model.get_parameter(name)!.shape;
            int dot = name.LastIndexOf('.');
            nn.Module? owner = modules.GetValueOrDefault(dot < 0 ? "" : name[..dot]);
            long elements = shape.Aggregate(1L, (a, b) => a * b);
            return owner is Conv2d conv
                ? new AmcLayer(name, true, conv.in_channels, conv.out_channels, conv.kernel_size[0] * conv.kernel_size[1], conv.stride[0], elements, elements)
                : new AmcLayer(name, false, elements / shape[0], shape[0], 1, 1, elements, elements);
        }).ToList();
    }

    /// <summary>
    /// Channel mode: one searched layer per dependency group of the model (<see cref="ChannelGraph"/>, traced on a
    /// random input of <see cref="AmcOptions.InputShape"/>), described by its first producer; its size is the MACs of
    /// the group's own layers.
    /// </summary>
    private static IReadOnlyList<AmcLayer> ChannelLayers(nn.Module model, AmcOptions options, out ChannelGraph graph)
    {
        try
        {
            using var example = ModuleTrace.Example(options.InputShape!);
            graph = ChannelGraph.Trace(model, example);
        }
        catch (Exception e) when (e is NotSupportedException or ArgumentException)
        {
            throw new ArgumentException($"Channel mode cannot search this model: {(e is ArgumentException a ? a.Bare() : e.Message)}", nameof(model), e);
        }
        if (options.Resource == AmcResource.Latency) options.Latency!.CheckCovers(graph, "options");
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        ChannelGraph structure = graph;
        return graph.Groups.Select(g => modules[g.Producers[0]] switch
        {
            Conv2d conv => new AmcLayer(g.Weight, true, conv.in_channels, conv.out_channels, conv.kernel_size[0] * conv.kernel_size[1], conv.stride[0], structure.Macs(g), g.Channels),
            Linear linear => new AmcLayer(g.Weight, false, linear.in_features, linear.out_features, 1, 1, structure.Macs(g), g.Channels),
            var other => throw new InvalidOperationException($"'{g.Producers[0]}' is a {other.GetType().Name}, not a Conv2d or Linear."),
        }).ToList();
    }

    public void Dispose()
    {
        _session.Dispose();
        ModelState.DisposeState(_dense);
    }
}
