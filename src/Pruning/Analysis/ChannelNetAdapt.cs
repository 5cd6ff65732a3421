using System.Globalization;
using System.Text;
using Pruning.Grouping;
using Pruning.Scheduling;
using Pruning.Structure;
using Pruning.Targets;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static Pruning.Analysis.ModelState;

namespace Pruning.Analysis;

/// <summary>
/// Latency of each Conv2d/Linear of a channel-prunable Sequential (see <see cref="SequentialChannels"/>) as a function
/// of its input and output channel counts, measured with TorchSharp: the kernels a physically shrunk model runs on.
/// Entries are timed on first use (a fresh layer of that size on an input of the layer's real spatial size, median of
/// runs after warm-up) and cached. Tests and device tables can supply the timings as a function instead.
/// </summary>
public sealed class ChannelLatencyTable
{
    private readonly Func<string, long, long, double> _measure;
    private readonly Dictionary<(string, long, long), double> _cache = new();

    /// <summary>A table whose entries come from <paramref name="milliseconds"/>(layer, in channels, out channels).</summary>
    public ChannelLatencyTable(IReadOnlyList<string> layers, Func<string, long, long, double> milliseconds)
    {
        ArgumentNullException.ThrowIfNull(layers);
        Layers = layers;
        _measure = milliseconds ?? throw new ArgumentNullException(nameof(milliseconds));
    }

    /// <summary>The Conv2d and Linear layers, in model order.</summary>
    public IReadOnlyList<string> Layers { get; }

    /// <summary>Every entry measured so far.</summary>
    public IReadOnlyDictionary<(string Layer, long In, long Out), double> Measured => _cache;

    /// <summary>The latency of <paramref name="layer"/> with the given channel counts.</summary>
    public double Milliseconds(string layer, long inChannels, long outChannels)
    {
        if (!_cache.TryGetValue((layer, inChannels, outChannels), out double ms))
        {
            ms = _measure(layer, inChannels, outChannels);
            if (!double.IsFinite(ms) || ms < 0) throw new InvalidOperationException($"The latency of '{layer}' at {inChannels}→{outChannels} came out as {ms}.");
            _cache[(layer, inChannels, outChannels)] = ms;
        }
        return ms;
    }

    /// <summary>
    /// A table timed with TorchSharp for <paramref name="model"/> on inputs of one sample's <paramref name="inputShape"/>
    /// (e.g. [1, 28, 28] or [784]) at <paramref name="batch"/>.
    /// </summary>
    public static ChannelLatencyTable Measure(Sequential model, long[] inputShape, int batch = 1, int runs = 25, ILatencyClock? clock = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputShape);
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(runs, 1);
        clock ??= StopwatchClock.Instance;
        // One forward pass records each layer's input shape (for a Linear behind a Flatten: features per channel).
        var geometry = new Dictionary<string, (nn.Module Module, long[] Input)>();
        var names = new List<string>();
        using (torch.no_grad())
        {
            Tensor x = torch.zeros([batch, .. inputShape]);
            foreach (var (name, child) in model.named_children())
            {
                if (child is Conv2d or Linear) { geometry[name] = (child, x.shape); names.Add(name); }
                x = ((nn.Module<Tensor, Tensor>)child).call(x);
            }
        }
        double Time(string layer, long inChannels, long outChannels)
        {
            var (module, input) = geometry[layer];
            nn.Module<Tensor, Tensor> probe;
            Tensor x;
            if (module is Conv2d conv)
            {
                long[] padding = conv.padding ?? throw new NotSupportedException($"Conv2d '{layer}' uses symbolic padding.");
                probe = nn.Conv2d(inChannels, outChannels, (conv.kernel_size[0], conv.kernel_size[1]), stride: (conv.stride[0], conv.stride[1]),
                    padding: (padding[0], padding[1]), dilation: (conv.dilation[0], conv.dilation[1]), bias: conv.bias is not null);
                x = torch.randn(batch, inChannels, input[2], input[3]);
            }
            else
            {
                var linear = (Linear)module;
                long originalIn = linear.weight!.shape[1];
                long perChannel = OriginalChannels(names, geometry, layer) is long c && c > 0 ? originalIn / c : 1;
                probe = nn.Linear(inChannels * perChannel, outChannels, hasBias: linear.bias is not null);
                x = torch.randn(batch, inChannels * perChannel);
            }
            using (probe)
            using (x)
            using (torch.no_grad())
            {
                for (int i = 0; i < Math.Max(10, runs / 2); i++) probe.call(x).Dispose();
                var times = new double[runs];
                for (int i = 0; i < runs; i++)
                {
                    long start = clock.Timestamp();
                    probe.call(x).Dispose();
                    times[i] = (clock.Timestamp() - start) / clock.TicksPerMillisecond;
                }
                Array.Sort(times);
                return times[runs / 2];
            }
        }
        return new ChannelLatencyTable(names, Time);
    }

    /// <summary>Output channels of the Conv2d/Linear before <paramref name="layer"/>, or null for the first.</summary>
    private static long? OriginalChannels(List<string> names, Dictionary<string, (nn.Module Module, long[] Input)> geometry, string layer)
    {
        int i = names.IndexOf(layer);
        if (i <= 0) return null;
        return geometry[names[i - 1]].Module switch
        {
            Conv2d c => c.weight!.shape[0],
            Linear l => l.weight!.shape[0],
            _ => null,
        };
    }
}

/// <summary>One channel-NetAdapt iteration: the layer cut and what it measured.</summary>
public sealed record ChannelNetAdaptIteration(int Iteration, string Layer, long Channels, double LatencyMilliseconds, double Metric, int ProposalsTried);

/// <summary>The outcome of <see cref="ChannelNetAdapt.Run"/>.</summary>
public sealed record ChannelNetAdaptResult(
    IReadOnlyList<ChannelNetAdaptIteration> Iterations,
    IReadOnlyDictionary<string, long> Channels,
    double DenseLatencyMilliseconds,
    double LatencyMilliseconds,
    double BudgetMilliseconds,
    bool BudgetMet)
{
    /// <summary>The iteration table.</summary>
    public override string ToString()
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"dense latency {DenseLatencyMilliseconds:F3} ms, budget {BudgetMilliseconds:F3} ms");
        text.AppendLine("iter  layer                 channels   latency ms      metric  proposals");
        foreach (var it in Iterations)
            text.AppendLine(CultureInfo.InvariantCulture, $"{it.Iteration,4}  {it.Layer,-20}  {it.Channels,8}  {it.LatencyMilliseconds,10:F3}  {it.Metric,10:G5}  {it.ProposalsTried,9}");
        text.Append(BudgetMet ? "budget met" : "budget NOT met: no layer can lose more channels");
        return text.ToString();
    }
}

/// <summary>
/// NetAdapt with channel pruning and TorchSharp latencies: each iteration proposes, per channel layer, the fewest
/// channels to remove (in steps of <c>channelStep</c> times the original count) that cut the table latency by ΔR — counting the layer and the next one, whose inputs shrink with it — removes them by
/// the L1 norm of their filters (with their bias and BatchNorm), lets the caller fine-tune briefly, and keeps the best.
/// On return the model holds the kept channels zeroed; <see cref="SequentialChannels.Shrink"/> then removes them.
/// </summary>
public static class ChannelNetAdapt
{
    /// <summary>Runs channel NetAdapt on <paramref name="model"/>, in place.</summary>
    /// <param name="model">A Sequential that <see cref="SequentialChannels.Analyze"/> accepts.</param>
    /// <param name="table">Latencies by (layer, in, out) channel counts.</param>
    /// <param name="fineTuneAndEvaluate">Fine-tunes the proposal briefly (calling <see cref="NetAdaptProposal.Remask"/> after each optimizer step) and returns the metric.</param>
    /// <param name="options">Budget, ΔR and direction.</param>
    /// <param name="channelStep">The granularity of a cut, as a fraction of a layer's original channels (default 1/8).</param>
    public static ChannelNetAdaptResult Run(Sequential model, ChannelLatencyTable table, Func<NetAdaptProposal, double> fineTuneAndEvaluate,
        NetAdaptOptions? options = null, double channelStep = 0.125)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(fineTuneAndEvaluate);
        options ??= new NetAdaptOptions();
        if (!(channelStep > 0 && channelStep < 1)) throw new ArgumentOutOfRangeException(nameof(channelStep), channelStep, "Must be in (0, 1).");
        var structure = SequentialChannels.Analyze(model);
        var original = table.Layers.ToDictionary(n => n, n => model.get_parameter($"{n}.weight")!.shape[0]);
        var kept = new Dictionary<string, long>(original);
        long firstInput = model.get_parameter($"{table.Layers[0]}.weight")!.shape[1];
        double Latency(IReadOnlyDictionary<string, long> channels)
        {
            double total = 0;
            for (int i = 0; i < table.Layers.Count; i++)
                total += table.Milliseconds(table.Layers[i], i > 0 ? channels[table.Layers[i - 1]] : firstInput, channels[table.Layers[i]]);
            return total;
        }

        double dense = Latency(kept), budget = dense * options.TargetLatencyFraction, step = dense * options.ReductionPerIteration;
        double current = dense;
        var iterations = new List<ChannelNetAdaptIteration>();
        for (int iteration = 1; current > budget + 1e-12 && iteration <= options.MaxIterations; iteration++)
        {
            double goal = Math.Max(budget, current - step);
            var snapshot = Snapshot(model);
            Dictionary<string, Tensor>? bestState = null;
            (string Layer, long Channels, double Latency, double Metric)? best = null;
            int tried = 0;
            try
            {
                foreach (ChannelLayer layer in structure.Layers)
                {
                    string name = layer.Producer;
                    long cut = Math.Max(1, (long)Math.Round(original[name] * channelStep));
                    (long Channels, double Latency)? pick = null;
                    for (long c = kept[name] - cut; c >= 1; c -= cut)
                    {
                        double latency = Latency(new Dictionary<string, long>(kept) { [name] = c });
                        // Gains below 5 % of ΔR are measurement noise, not worth removing channels for.
                        if (latency > current - 0.05 * step) continue;
                        if (pick is null || latency < pick.Value.Latency) pick = (c, latency);
                        if (latency <= goal + 1e-12) { pick = (c, latency); break; }
                    }
                    if (pick is not { } chosen) continue;
                    RemoveChannels(model, structure, layer, original[name], chosen.Channels);
                    var proposalMasks = Masks(model, structure);
                    tried++;
                    double metric;
                    try
                    {
                        metric = fineTuneAndEvaluate(new NetAdaptProposal(model, layer.Weight, 1 - (double)chosen.Channels / original[name], proposalMasks));
                    }
                    finally
                    {
                        foreach (Tensor m in proposalMasks.Values) m.Dispose();
                    }
                    if (!double.IsFinite(metric)) throw new InvalidOperationException($"The fine-tuning callback returned {metric} for '{name}' at {chosen.Channels} channels.");
                    bool better = best is null || (options.Direction == MetricDirection.HigherIsBetter ? metric > best.Value.Metric : metric < best.Value.Metric);
                    if (better)
                    {
                        DisposeState(bestState);
                        bestState = Snapshot(model);
                        best = (name, chosen.Channels, chosen.Latency, metric);
                    }
                    Restore(model, snapshot);
                }
            }
            finally
            {
                DisposeState(snapshot);
            }
            if (best is not { } keptBest) break;
            Restore(model, bestState!);
            DisposeState(bestState);
            kept[keptBest.Layer] = keptBest.Channels;
            current = keptBest.Latency;
            iterations.Add(new ChannelNetAdaptIteration(iteration, keptBest.Layer, keptBest.Channels, current, keptBest.Metric, tried));
        }
        return new ChannelNetAdaptResult(iterations, kept, dense, current, budget, current <= budget + 1e-12);
    }

    /// <summary>Zeroes all but <paramref name="keep"/> channels of <paramref name="layer"/> (smallest L1 filter norms first, already-removed ones first of all).</summary>
    private static void RemoveChannels(Sequential model, SequentialChannels structure, ChannelLayer layer, long original, long keep)
    {
        using var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new OneShotSchedule(1 - (double)keep / original),
            Targets = PruningTargets.Default.Include(layer.Weight),
            Granularity = PruningGranularity.OutputChannels(),
            Channels = structure,
        });
        pruner.Step();
    }

    /// <summary>Keep-masks (nonzero = kept) for every producer weight and bias and every BatchNorm scale and shift.</summary>
    private static Dictionary<string, Tensor> Masks(Sequential model, SequentialChannels structure)
    {
        using var _ = torch.no_grad();
        var names = structure.Layers.SelectMany(l => new[] { $"{l.Producer}.weight", $"{l.Producer}.bias" }
            .Concat(l.BatchNorm is null ? [] : new[] { $"{l.BatchNorm}.weight", $"{l.BatchNorm}.bias" }));
        var masks = new Dictionary<string, Tensor>();
        foreach (string name in names)
            if (model.get_parameter(name) is { } p)
            {
                // A channel is kept when anything in its row is nonzero; masks are per row, so a weight that trains to
                // exactly zero inside a kept channel is not frozen.
                Tensor rows = p.dim() > 1 ? p.detach().reshape(p.shape[0], -1).ne(0).any(1) : p.detach().ne(0);
                masks[name] = rows.to_type(ScalarType.Float32).reshape([p.shape[0], .. Enumerable.Repeat(1L, (int)p.dim() - 1)]);
            }
        return masks;
    }
}
