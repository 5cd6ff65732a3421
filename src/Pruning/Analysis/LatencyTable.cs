using System.Diagnostics;
using System.Globalization;
using System.Text;
using Pruning.Export;
using Pruning.Sparse;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Analysis;

/// <summary>A source of timestamps; tests inject a fake one.</summary>
public interface ILatencyClock
{
    /// <summary>The current time in ticks.</summary>
    long Timestamp();

    /// <summary>Ticks per millisecond.</summary>
    double TicksPerMillisecond { get; }
}

/// <summary>The real clock (<see cref="Stopwatch"/>).</summary>
public sealed class StopwatchClock : ILatencyClock
{
    /// <summary>The shared instance.</summary>
    public static StopwatchClock Instance { get; } = new();

    /// <inheritdoc />
    public long Timestamp() => Stopwatch.GetTimestamp();

    /// <inheritdoc />
    public double TicksPerMillisecond => Stopwatch.Frequency / 1000.0;
}

/// <summary>
/// Measured latency of each prunable layer at candidate sparsities, with the kernels the exported model runs on
/// (<see cref="SparseModel"/>: CSR or the dense fallback, whichever <see cref="MatrixFormat.Auto"/> picks). The
/// estimate for a model is the sum over its layers; layers that are not pruned cost the same at every candidate and
/// are left out. NetAdapt reads this table instead of counting MACs, which is the point of NetAdapt.
/// </summary>
public sealed class LatencyTable
{
    private readonly Dictionary<string, (double Sparsity, double Milliseconds)[]> _entries;

    /// <summary>Creates a table from measurements (also for tests and for tables measured on a target device).</summary>
    public LatencyTable(IReadOnlyDictionary<string, IReadOnlyList<(double Sparsity, double Milliseconds)>> entries, int batch)
    {
        ArgumentNullException.ThrowIfNull(entries);
        if (entries.Count == 0) throw new ArgumentException("A latency table needs at least one layer.", nameof(entries));
        _entries = new Dictionary<string, (double, double)[]>();
        foreach (var (name, points) in entries)
        {
            var sorted = points.OrderBy(p => p.Sparsity).ToArray();
            if (sorted.Length == 0 || sorted[0].Sparsity != 0)
                throw new ArgumentException($"Layer '{name}' needs a measurement at sparsity 0 (the dense layer).", nameof(entries));
            if (sorted.Any(p => p.Sparsity < 0 || p.Sparsity >= 1 || !double.IsFinite(p.Milliseconds) || p.Milliseconds < 0))
                throw new ArgumentException($"Layer '{name}' has a sparsity outside [0, 1) or an invalid time.", nameof(entries));
            _entries[name] = sorted;
        }
        Batch = batch;
    }

    /// <summary>The batch size the layers were timed at.</summary>
    public int Batch { get; }

    /// <summary>The layers, by weight name.</summary>
    public IReadOnlyCollection<string> Layers => _entries.Keys;

    /// <summary>The candidate sparsities measured for <paramref name="layer"/>, ascending.</summary>
    public IReadOnlyList<(double Sparsity, double Milliseconds)> Candidates(string layer) =>
        _entries.TryGetValue(layer, out var points) ? points : throw new ArgumentException($"Layer '{layer}' is not in the latency table.", nameof(layer));

    /// <summary>The measured latency of <paramref name="layer"/> at <paramref name="sparsity"/> (linear between measured candidates).</summary>
    public double Milliseconds(string layer, double sparsity)
    {
        var points = Candidates(layer);
        if (sparsity <= points[0].Sparsity) return points[0].Milliseconds;
        for (int i = 1; i < points.Count; i++)
            if (sparsity <= points[i].Sparsity)
            {
                var (s0, t0) = points[i - 1];
                var (s1, t1) = points[i];
                return t0 + (t1 - t0) * (sparsity - s0) / (s1 - s0);
            }
        return points[^1].Milliseconds;
    }

    /// <summary>The estimate for a model whose layers have the given sparsities (missing layers count as dense).</summary>
    public double Milliseconds(IReadOnlyDictionary<string, double> sparsities) =>
        _entries.Keys.Sum(name => Milliseconds(name, sparsities.TryGetValue(name, out double s) ? s : 0));

    /// <summary>
    /// Times every Linear and Conv2d of <paramref name="model"/> (a Sequential, as <see cref="SparseExport"/> takes)
    /// at sparsity 0 and each of <paramref name="sparsities"/>: a random weight of the layer's shape with that
    /// fraction of zeros, built the way export builds it, run <paramref name="runs"/> times after warm-up on
    /// <paramref name="batch"/> samples; the table keeps the median.
    /// </summary>
    public static LatencyTable Measure(nn.Module model, FeatureShape input, IReadOnlyList<double> sparsities, int batch = 1,
        int runs = 25, int threads = 0, ILatencyClock? clock = null, int seed = 1)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sparsities);
        if (sparsities.Count == 0) throw new ArgumentException("Give at least one candidate sparsity.", nameof(sparsities));
        foreach (double s in sparsities)
            if (double.IsNaN(s) || s < 0 || s >= 1) throw new ArgumentException($"Candidate sparsity {s} is outside [0, 1).", nameof(sparsities));
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(runs, 1);
        clock ??= StopwatchClock.Instance;
        SparseModel exported = SparseExport.ToSparseModel(model, input, MatrixFormat.Dense);
        IReadOnlyList<string> names = SparseExport.WeightNames(model);
        double[] candidates = sparsities.Append(0).Distinct().Order().ToArray();
        var entries = new Dictionary<string, IReadOnlyList<(double, double)>>();
        var random = new Random(seed);
        FeatureShape shape = input;
        int weighted = 0;
        foreach (SparseLayer layer in exported.Layers)
        {
            if (layer is LinearLayer or Conv2dLayer)
            {
                var points = new List<(double, double)>();
                foreach (double s in candidates)
                {
                    SparseLayer probe = WithRandomWeights(layer, s, random);
                    var single = new SparseModel(shape, [probe]);
                    var x = new float[(long)shape.Size * batch];
                    for (int i = 0; i < x.Length; i++) x[i] = (float)(random.NextDouble() * 2 - 1);
                    var y = new float[(long)single.OutputShape.Size * batch];
                    // Warm-up: caches, the kernel threads, and the JIT's optimized code for the layer's path.
                    for (int i = 0; i < Math.Max(20, runs); i++) single.Run(x, y, batch, threads);
                    var times = new double[runs];
                    for (int i = 0; i < runs; i++)
                    {
                        long start = clock.Timestamp();
                        single.Run(x, y, batch, threads);
                        times[i] = (clock.Timestamp() - start) / clock.TicksPerMillisecond;
                    }
                    Array.Sort(times);
                    points.Add((s, times[runs / 2]));
                }
                entries[names[weighted++]] = points;
            }
            shape = layer.OutputShape(shape);
        }
        return new LatencyTable(entries, batch);
    }

    internal static SparseLayer WithRandomWeights(SparseLayer layer, double sparsity, Random random)
    {
        WeightMatrix original = layer is LinearLayer l ? l.Weight : ((Conv2dLayer)layer).Weight;
        // Exactly as many zeros as pruning to this sparsity leaves (round half to even, as the pruner counts), at
        // random places: a random count would straddle the format thresholds (e.g. CSR at ≤ 50 % density for a conv).
        var w = new float[(long)original.Rows * original.Cols];
        for (long i = 0; i < w.Length; i++) w[i] = (float)(random.NextDouble() * 2 - 1);
        long zeros = (long)Math.Round(sparsity * w.Length, MidpointRounding.ToEven);
        Array.Clear(w, 0, (int)zeros);
        random.Shuffle(w);
        return layer switch
        {
            LinearLayer linear => new LinearLayer(WeightMatrix.FromDense(w, original.Rows, original.Cols, MatrixFormat.Auto), linear.Bias),
            Conv2dLayer conv => Conv2dLayer.FromDense(w, original.Rows, conv.Bias, conv.InChannels, conv.Kernel, conv.Stride, conv.Padding, conv.Dilation),
            _ => throw new InvalidOperationException(),
        };
    }

    /// <summary>The table: one row per layer, one column per candidate sparsity, cells in µs.</summary>
    public override string ToString()
    {
        double[] all = _entries.Values.SelectMany(p => p.Select(q => q.Sparsity)).Distinct().Order().ToArray();
        int width = Math.Max(8, _entries.Keys.Max(k => k.Length));
        var text = new StringBuilder($"{"layer".PadRight(width)}");
        foreach (double s in all) text.Append(CultureInfo.InvariantCulture, $"  {s,8:P0}");
        text.AppendLine(CultureInfo.InvariantCulture, $"   (µs, batch {Batch})");
        foreach (var (name, points) in _entries)
        {
            text.Append(name.PadRight(width));
            foreach (double s in all)
            {
                var hit = points.Where(p => p.Sparsity == s).ToArray();
                text.Append(CultureInfo.InvariantCulture, $"  {(hit.Length > 0 ? (hit[0].Milliseconds * 1000).ToString("F1", CultureInfo.InvariantCulture) : "-"),8}");
            }
            text.AppendLine();
        }
        return text.ToString().TrimEnd();
    }
}
