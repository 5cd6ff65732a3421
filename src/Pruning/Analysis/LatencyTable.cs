using System.Globalization;
using System.Text;
using Pruning.Export;
using Pruning.Interop;
using Pruning.Sparse;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Timing;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Analysis;

/// <summary>
/// Measured latency of each prunable layer of a model, keyed by <see cref="LayerVariant"/> (the layer, its channel
/// counts and its sparsity). NetAdapt reads it instead of counting MACs, which is the point of NetAdapt; the estimate
/// for a model is the sum over its layers (layers that are not pruned cost the same in every proposal and are left
/// out). Two ways to fill it: <see cref="MeasureSparse"/> times each layer on the sparse runtime at candidate
/// sparsities (what fine-grained pruning buys), <see cref="MeasureDense"/> times each layer with TorchSharp at the
/// channel counts it is asked for (what channel removal buys). Tables measured elsewhere (on a target device) are
/// built with the constructor.
/// </summary>
public sealed class LatencyTable
{
    private readonly IReadOnlyList<LatencyLayer> _layers;
    private readonly Func<LayerVariant, double>? _measure;
    private readonly Dictionary<LayerVariant, double> _measured = [];

    /// <summary>A table of <paramref name="layers"/> timed at <paramref name="batch"/>.</summary>
    /// <param name="layers">The layers, in model order, with their unpruned channel counts.</param>
    /// <param name="batch">The batch size the layers were (or will be) timed at.</param>
    /// <param name="measured">Timings already made, in milliseconds.</param>
    /// <param name="measure">Times a variant that is asked for and not yet measured (then cached); without it, a
    /// sparsity between two measured ones is interpolated linearly, and every layer needs its dense timing.</param>
    /// <exception cref="ArgumentException">A layer is named twice, or a timing names an unknown layer, impossible
    /// channel counts, a sparsity outside [0, 1) or an invalid time.</exception>
    public LatencyTable(IReadOnlyList<LatencyLayer> layers, int batch, IEnumerable<KeyValuePair<LayerVariant, double>>? measured = null,
        Func<LayerVariant, double>? measure = null)
    {
        ArgumentNullException.ThrowIfNull(layers);
        if (layers.Count == 0) throw new ArgumentException("A latency table needs at least one layer.", nameof(layers));
        foreach (LatencyLayer layer in layers)
        {
            if (layer is null || string.IsNullOrEmpty(layer.Name)) throw new ArgumentException("Every layer needs a name.", nameof(layers));
            if (layer.InChannels < 1 || layer.OutChannels < 1)
                throw new ArgumentException($"Layer '{layer.Name}' has {layer.InChannels}→{layer.OutChannels} channels; both must be positive.", nameof(layers));
        }
        if (layers.Select(l => l.Name).Distinct().Count() != layers.Count)
            throw new ArgumentException($"A layer is named twice: {string.Join(", ", layers.Select(l => l.Name))}.", nameof(layers));
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        _layers = layers.ToArray();
        Batch = batch;
        _measure = measure;
        foreach (var (variant, ms) in measured ?? [])
        {
            Check(variant, nameof(measured));
            CheckTime(variant, ms, nameof(measured));
            _measured[variant] = ms;
        }
        if (measure is null)
            foreach (LatencyLayer layer in _layers)
                if (!_measured.ContainsKey(layer.At(0)))
                    throw new ArgumentException($"Layer '{layer.Name}' needs a measurement of its dense layer ({layer.InChannels}→{layer.OutChannels} at sparsity 0).", nameof(measured));
    }

    /// <summary>The layers, in model order.</summary>
    public IReadOnlyList<LatencyLayer> Layers => _layers;

    /// <summary>The batch size the layers are timed at.</summary>
    public int Batch { get; }

    /// <summary>Every timing so far, in milliseconds.</summary>
    public IReadOnlyDictionary<LayerVariant, double> Measured => _measured;

    /// <summary>The layer named <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">The table has no such layer.</exception>
    public LatencyLayer Layer(string name) => _layers.FirstOrDefault(l => l.Name == name)
        ?? throw new ArgumentException($"Layer '{name}' is not in the latency table; it has {string.Join(", ", _layers.Select(l => l.Name))}.", nameof(name));

    /// <summary>The latency of one variant of a layer: measured, measured now, or interpolated in sparsity.</summary>
    /// <exception cref="ArgumentException">The variant names an unknown layer or impossible channel counts, or it cannot be measured or interpolated.</exception>
    public double Milliseconds(LayerVariant variant)
    {
        Check(variant, nameof(variant));
        if (_measured.TryGetValue(variant, out double ms)) return ms;
        if (_measure is not null)
        {
            ms = _measure(variant);
            CheckTime(variant, ms, nameof(variant));
            _measured[variant] = ms;
            return ms;
        }
        var points = Points(variant.Layer, variant.InChannels, variant.OutChannels);
        if (points.Length == 0)
            throw new ArgumentException($"'{variant.Layer}' was not measured at {variant.InChannels}→{variant.OutChannels} channels.", nameof(variant));
        if (variant.Sparsity <= points[0].Sparsity) return points[0].Milliseconds;
        for (int i = 1; i < points.Length; i++)
            if (variant.Sparsity <= points[i].Sparsity)
            {
                var (s0, t0) = points[i - 1];
                var (s1, t1) = points[i];
                return t0 + (t1 - t0) * (variant.Sparsity - s0) / (s1 - s0);
            }
        return points[^1].Milliseconds;
    }

    /// <summary>The latency of the unpruned-channel <paramref name="layer"/> at <paramref name="sparsity"/>.</summary>
    public double Milliseconds(string layer, double sparsity) => Milliseconds(Layer(layer).At(sparsity));

    /// <summary>The estimate for a model whose layers have the given sparsities (missing layers count as dense).</summary>
    public double Milliseconds(IReadOnlyDictionary<string, double> sparsities)
    {
        ArgumentNullException.ThrowIfNull(sparsities);
        foreach (string name in sparsities.Keys) Layer(name);
        return _layers.Sum(l => Milliseconds(l.At(sparsities.TryGetValue(l.Name, out double s) ? s : 0)));
    }

    /// <summary>
    /// The estimate for the model <paramref name="graph"/> was traced from when the groups in <paramref name="kept"/>
    /// (by weight) keep that many channels and the rest keep all: each Conv2d and Linear looked up at the channel counts
    /// it then has (its inputs are the channels of the groups it reads).
    /// </summary>
    internal double ChannelMilliseconds(Structure.ChannelGraph graph, IReadOnlyDictionary<string, long> kept) =>
        graph.PricedLayers(kept).Sum(l => Milliseconds(new LayerVariant($"{l.Name}.weight", l.InChannels, l.OutChannels, 0)));

    /// <summary>Throws unless this table lists exactly the Conv2d and Linear weights of <paramref name="graph"/>'s model, at their channel counts.</summary>
    internal void CheckCovers(Structure.ChannelGraph graph, string argument)
    {
        string[] expected = graph.PricedLayers().Select(l => $"{l.Name}.weight").ToArray();
        if (!expected.Order(StringComparer.Ordinal).SequenceEqual(_layers.Select(l => l.Name).Order(StringComparer.Ordinal)))
            throw new ArgumentException($"The latency table lists [{string.Join(", ", _layers.Select(l => l.Name))}]; the traced model's Conv2d and Linear weights are [{string.Join(", ", expected)}]. Measure it with LatencyTable.MeasureDense(graph).", argument);
    }

    /// <summary>The sparsities measured for the unpruned-channel <paramref name="layer"/>, ascending, with their latencies.</summary>
    public IReadOnlyList<(double Sparsity, double Milliseconds)> Candidates(string layer)
    {
        LatencyLayer l = Layer(layer);
        return Points(l.Name, l.InChannels, l.OutChannels);
    }

    private (double Sparsity, double Milliseconds)[] Points(string layer, long inChannels, long outChannels) =>
        _measured.Where(e => e.Key.Layer == layer && e.Key.InChannels == inChannels && e.Key.OutChannels == outChannels)
            .Select(e => (e.Key.Sparsity, e.Value)).OrderBy(p => p.Sparsity).ToArray();

    private void Check(LayerVariant variant, string argument)
    {
        LatencyLayer layer = _layers.FirstOrDefault(l => l.Name == variant.Layer)
            ?? throw new ArgumentException($"Layer '{variant.Layer}' is not in the latency table; it has {string.Join(", ", _layers.Select(l => l.Name))}.", argument);
        if (variant.InChannels < 1 || variant.InChannels > layer.InChannels || variant.OutChannels < 1 || variant.OutChannels > layer.OutChannels)
            throw new ArgumentException($"'{variant.Layer}' has {layer.InChannels}→{layer.OutChannels} channels; {variant.InChannels}→{variant.OutChannels} is not a pruned form of it.", argument);
        if (double.IsNaN(variant.Sparsity) || variant.Sparsity < 0 || variant.Sparsity >= 1)
            throw new ArgumentException($"Sparsity {variant.Sparsity} of '{variant.Layer}' is outside [0, 1).", argument);
    }

    private static void CheckTime(LayerVariant variant, double ms, string argument)
    {
        if (!double.IsFinite(ms) || ms < 0)
            throw new ArgumentException($"The latency of {variant} is {ms}; it must be a finite, non-negative number of milliseconds.", argument);
    }

    /// <summary>
    /// Times every Linear and Conv2d of <paramref name="model"/> (a Sequential, as <see cref="SparseExport"/> takes) on the
    /// sparse runtime, at sparsity 0 and each of <paramref name="sparsities"/>: a random weight of the layer's shape with
    /// exactly that fraction of zeros, built the way export builds it, run <paramref name="runs"/> times after warm-up
    /// on <paramref name="batch"/> samples; the table keeps the median. Other sparsities are measured when asked for.
    /// </summary>
    public static LatencyTable MeasureSparse(nn.Module model, FeatureShape input, IReadOnlyList<double> sparsities, int batch = 1,
        int runs = 25, int threads = 0, ILatencyClock? clock = null, int seed = 1)
    {
        TorchHealth.EnsureOnFirstUse();
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sparsities);
        if (sparsities.Count == 0) throw new ArgumentException("Give at least one candidate sparsity.", nameof(sparsities));
        foreach (double s in sparsities)
            if (double.IsNaN(s) || s < 0 || s >= 1) throw new ArgumentException($"Candidate sparsity {s} is outside [0, 1).", nameof(sparsities));
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(runs, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(threads);
        clock ??= StopwatchClock.Instance;
        SparseModel exported = SparseExport.ToSparseModel(model, input, MatrixFormat.Dense);
        IReadOnlyList<string> names = SparseExport.WeightNames(model, input);
        var probes = new Dictionary<string, (SparseLayer Layer, FeatureShape Input)>();
        var layers = new List<LatencyLayer>();
        FeatureShape shape = input;
        foreach (SparseLayer layer in exported.Layers)
        {
            if (layer is LinearLayer or Conv2dLayer)
            {
                string name = names[layers.Count];
                WeightMatrix weight = layer is LinearLayer l ? l.Weight : ((Conv2dLayer)layer).Weight;
                layers.Add(new LatencyLayer(name, layer is Conv2dLayer c ? c.InChannels : weight.Cols, weight.Rows));
                probes[name] = (layer, shape);
            }
            shape = layer.OutputShape(shape);
        }
        var random = new Random(seed);
        double Time(LayerVariant variant)
        {
            var (layer, shape) = probes[variant.Layer];
            LatencyLayer original = layers.First(l => l.Name == variant.Layer);
            if (variant.InChannels != original.InChannels || variant.OutChannels != original.OutChannels)
                throw new NotSupportedException($"A sparse-runtime table times '{variant.Layer}' at its own {original.InChannels}→{original.OutChannels} channels; use MeasureDense for channel counts.");
            var single = new SparseModel(shape, [WithRandomWeights(layer, variant.Sparsity, random)]);
            var x = new float[(long)shape.Size * batch];
            for (int i = 0; i < x.Length; i++) x[i] = (float)(random.NextDouble() * 2 - 1);
            var y = new float[(long)single.OutputShape.Size * batch];
            // Warm-up: caches, the kernel threads, and the JIT's optimized code for the layer's path.
            return LatencyTimer.Median(() => single.Run(x, y, batch, threads), Math.Max(20, runs), runs, clock);
        }
        var table = new LatencyTable(layers, batch, measure: Time);
        foreach (LatencyLayer layer in layers)
            foreach (double s in sparsities.Append(0).Distinct().Order())
                table.Milliseconds(layer.At(s));
        return table;
    }

    /// <summary>
    /// A table that times every Conv2d and Linear of the model <paramref name="graph"/> was traced from with
    /// TorchSharp, at the channel counts it is asked for, when first asked: a fresh dense layer of that size (a
    /// depthwise convolution stays depthwise) on an input of the layer's real spatial size, <paramref name="batch"/>
    /// samples, median of <paramref name="runs"/> after warm-up. These are the kernels a physically shrunk model runs
    /// on. Layers are named by weight (<c>conv1.weight</c>); <see cref="ChannelNetAdapt"/> prices a proposal with it.
    /// </summary>
    public static LatencyTable MeasureDense(Structure.ChannelGraph graph, int batch = 1, int runs = 25, ILatencyClock? clock = null)
    {
        TorchHealth.EnsureOnFirstUse();
        ArgumentNullException.ThrowIfNull(graph);
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(runs, 1);
        clock ??= StopwatchClock.Instance;
        var priced = graph.PricedLayers().ToDictionary(l => $"{l.Name}.weight");
        if (priced.Count == 0) throw new ArgumentException("The model has no Conv2d or Linear layer to time.", nameof(graph));
        var layers = priced.Select(p => new LatencyLayer(p.Key, p.Value.InChannels, p.Value.OutChannels)).ToList();
        double Time(LayerVariant variant)
        {
            if (variant.Sparsity != 0)
                throw new NotSupportedException($"A TorchSharp table times dense layers; '{variant.Layer}' was asked for at sparsity {variant.Sparsity}.");
            var layer = priced[variant.Layer];
            using var scope = torch.NewDisposeScope();
            nn.Module<Tensor, Tensor> probe;
            Tensor x;
            if (layer.Module is Conv2d conv)
            {
                long[] padding = conv.padding ?? throw new NotSupportedException($"Conv2d '{layer.Name}' uses symbolic padding.");
                bool depthwise = Structure.ChannelSpaces.IsDepthwise(conv);
                if (depthwise && variant.InChannels != variant.OutChannels)
                    throw new ArgumentException($"Depthwise '{layer.Name}' has as many outputs as inputs; it was asked for at {variant.InChannels}→{variant.OutChannels}.", nameof(variant));
                long groups = depthwise ? variant.InChannels : conv.groups;
                probe = nn.Conv2d(variant.InChannels, variant.OutChannels, (conv.kernel_size[0], conv.kernel_size[1]), stride: (conv.stride[0], conv.stride[1]),
                    padding: (padding[0], padding[1]), dilation: (conv.dilation[0], conv.dilation[1]), groups: groups, bias: conv.bias is not null);
                x = torch.randn([batch, variant.InChannels, .. layer.SampleInput.Skip(1)]);
            }
            else
            {
                long features = variant.InChannels * layer.PerChannel;
                probe = nn.Linear(features, variant.OutChannels, hasBias: ((Linear)layer.Module).bias is not null);
                x = torch.randn([batch, .. layer.SampleInput.SkipLast(1), features]);
            }
            using (probe)
            using (torch.no_grad())
                return LatencyTimer.Median(() => probe.call(x).Dispose(), Math.Max(10, runs / 2), runs, clock);
        }
        return new LatencyTable(layers, batch, measure: Time);
    }

    /// <summary>A copy of a Linear or Conv2d layer with random weights, exactly round(s·n) of them zero, in the format export would pick.</summary>
    internal static SparseLayer WithRandomWeights(SparseLayer layer, double sparsity, Random random)
    {
        WeightMatrix original = layer switch
        {
            LinearLayer l => l.Weight,
            Conv2dLayer c => c.Weight,
            _ => throw new ArgumentException($"Only Linear and Conv2d layers have weights to randomize; got {layer.Describe()}.", nameof(layer)),
        };
        // Exactly as many zeros as pruning to this sparsity leaves (round half to even, as the pruner counts), at
        // random places: a random count would straddle the format thresholds (e.g. CSR at ≤ 50 % density for a conv).
        var w = new float[(long)original.Rows * original.Cols];
        for (long i = 0; i < w.Length; i++) w[i] = (float)(random.NextDouble() * 2 - 1);
        long zeros = Selection.MaskSelector.PrunedCount(sparsity, w.Length);
        Array.Clear(w, 0, (int)zeros);
        random.Shuffle(w);
        return layer switch
        {
            LinearLayer linear => new LinearLayer(WeightMatrix.FromDense(w, original.Rows, original.Cols, MatrixFormat.Auto), linear.Bias),
            Conv2dLayer conv => Conv2dLayer.FromDense(w, original.Rows, conv.Bias, conv.InChannels, conv.Kernel, conv.Stride, conv.Padding, conv.Dilation),
            _ => throw new System.Diagnostics.UnreachableException(),
        };
    }

    /// <summary>The table in µs: per layer, its measured sparsities at its own channel counts, then any other channel counts.</summary>
    public override string ToString()
    {
        double[] all = _layers.SelectMany(l => Points(l.Name, l.InChannels, l.OutChannels).Select(p => p.Sparsity)).Distinct().Order().ToArray();
        int width = Math.Max(8, _layers.Max(l => l.Name.Length));
        var text = new StringBuilder($"{"layer".PadRight(width)}");
        foreach (double s in all) text.Append(CultureInfo.InvariantCulture, $"  {s,8:P0}");
        text.AppendLine(CultureInfo.InvariantCulture, $"   (µs, batch {Batch})");
        foreach (LatencyLayer layer in _layers)
        {
            var points = Points(layer.Name, layer.InChannels, layer.OutChannels);
            text.Append(layer.Name.PadRight(width));
            foreach (double s in all)
            {
                var hit = points.Where(p => p.Sparsity == s).ToArray();
                text.Append(CultureInfo.InvariantCulture, $"  {(hit.Length > 0 ? (hit[0].Milliseconds * 1000).ToString("F1", CultureInfo.InvariantCulture) : "-"),8}");
            }
            var others = _measured.Where(e => e.Key.Layer == layer.Name && (e.Key.InChannels != layer.InChannels || e.Key.OutChannels != layer.OutChannels))
                .OrderByDescending(e => e.Key.OutChannels).ThenByDescending(e => e.Key.InChannels).ToArray();
            foreach (var (variant, ms) in others)
                text.Append(CultureInfo.InvariantCulture, $"  {variant.InChannels}→{variant.OutChannels}: {ms * 1000:F1}");
            text.AppendLine();
        }
        return text.ToString().TrimEnd();
    }
}
