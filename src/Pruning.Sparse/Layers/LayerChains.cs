using System.Runtime.CompilerServices;
using Pruning.Sparse.Kernels;
namespace Pruning.Sparse.Layers;

/// <summary>What the branching layers (<see cref="ResidualLayer"/>, <see cref="ConcatLayer"/>, <see cref="ScaleLayer"/>) share: running a chain of layers on carved buffers.</summary>
internal static class LayerChains
{
    /// <summary>The shapes along <paramref name="chain"/> from <paramref name="input"/>: one more than the layers.</summary>
    public static FeatureShape[] Shapes(IReadOnlyList<SparseLayer> chain, FeatureShape input)
    {
        var shapes = new FeatureShape[chain.Count + 1];
        shapes[0] = input;
        for (int i = 0; i < chain.Count; i++) shapes[i + 1] = chain[i].OutputShape(shapes[i]);
        return shapes;
    }

    /// <summary>The largest scratch any layer of the chain needs.</summary>
    public static long LayerScratch(IReadOnlyList<SparseLayer> chain, FeatureShape[] shapes, int batch)
    {
        long scratch = 0;
        for (int i = 0; i < chain.Count; i++) scratch = Math.Max(scratch, chain[i].ScratchSize(shapes[i], batch));
        return scratch;
    }

    /// <summary>The layers a branching layer holds (its branches, one after another), or null for a layer that does not branch.</summary>
    public static IEnumerable<SparseLayer>? Inner(SparseLayer layer) => layer switch
    {
        ResidualLayer r => r.Main.Concat(r.Shortcut),
        ConcatLayer c => c.Branches.SelectMany(b => b),
        ScaleLayer s => s.Factors,
        _ => null,
    };

    /// <summary>Every layer, each branching layer followed by the layers inside it, at any depth.</summary>
    public static IEnumerable<SparseLayer> All(IEnumerable<SparseLayer> layers) =>
        layers.SelectMany(l => Inner(l) is { } inner ? All(inner).Prepend(l) : [l]);

    /// <summary>How deeply branching layers nest in <paramref name="layers"/> (0 when none branch).</summary>
    public static int Depth(IEnumerable<SparseLayer> layers) =>
        layers.Select(l => Inner(l) is { } inner ? 1 + Depth(inner) : 0).DefaultIfEmpty(0).Max();

    /// <summary>
    /// The activation (ReLU or ReLU6) and the 2×2 max pooling at stride 2 after the layer at <paramref name="i"/>
    /// (whose input is <paramref name="input"/>) that it can apply as it stores its output, either null: only a
    /// convolution fuses. Whether it pools at a given batch is <see cref="FusedAfter"/>'s decision.
    /// </summary>
    public static (ActivationLayer? Activation, Pool2dLayer? Pool) Fusible(IReadOnlyList<SparseLayer> chain, int i, FeatureShape input)
    {
        if (chain[i] is not Conv2dLayer conv) return default;
        int j = i + 1;
        ActivationLayer? activation = j < chain.Count && chain[j] is ActivationLayer a && Epilogue.Fuses(a) ? a : null;
        if (activation is not null) j++;
        Pool2dLayer? pool = j < chain.Count && chain[j] is Pool2dLayer p && Epilogue.Fuses(p, conv.OutputShape(input)) ? p : null;
        return (activation, pool);
    }

    /// <summary>
    /// What the layer at <paramref name="i"/> applies as it stores its output, in place of the layers after it, or
    /// null when nothing fuses: <see cref="Fusible"/>'s activation, and its pooling when the convolution runs direct at
    /// this shape and batch. The one place that decides fusion.
    /// </summary>
    public static Epilogue? FusedAfter(IReadOnlyList<SparseLayer> chain, FeatureShape[] shapes, int i, int batch)
    {
        var (activation, pool) = Fusible(chain, i, shapes[i]);
        bool pools = pool is not null && ((Conv2dLayer)chain[i]).StoresPooled(shapes[i], batch);
        return activation is null && !pools ? null : Epilogue.Of(activation, pools);
    }

    /// <summary>
    /// Runs the layer at <paramref name="i"/> from <paramref name="source"/> into <paramref name="target"/> (they may be
    /// the same for an in-place layer), with the layers <paramref name="fused"/> (<see cref="FusedAfter"/>, which the
    /// caller asked once) covers applied as it stores.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Step(IReadOnlyList<SparseLayer> chain, FeatureShape[] shapes, int i, Epilogue? fused, ReadOnlySpan<float> source, Span<float> target, Span<float> scratch, int batch, int threads)
    {
        if (fused is { } epilogue) ((Conv2dLayer)chain[i]).Forward(source, shapes[i], target, batch, scratch, threads, epilogue);
        else chain[i].Forward(source, shapes[i], target, batch, scratch, threads);
    }

    /// <summary>
    /// Runs <paramref name="chain"/> (its shapes in <paramref name="shapes"/>) on <paramref name="input"/> (left
    /// untouched) into <paramref name="result"/>, ping-ponging through a and b: the first layer reads the input where
    /// it is and the last writes the result, so neither is copied. None of the four may overlap.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(IReadOnlyList<SparseLayer> chain, FeatureShape[] shapes, ReadOnlySpan<float> input, Span<float> result,
        Span<float> a, Span<float> b, Span<float> scratch, int batch, int threads)
    {
        if (chain.Count == 0)
        {
            input[..(shapes[0].Size * batch)].CopyTo(result);
            return;
        }
        ReadOnlySpan<float> source = input;
        int holder = -1;   // the buffer source lives in: -1 the input (read only), 0 a, 1 b
        for (int i = 0; i < chain.Count;)
        {
            Epilogue? fused = FusedAfter(chain, shapes, i, batch);
            int layers = 1 + (fused?.Layers ?? 0);
            bool last = i + layers == chain.Count;
            // An in-place layer writes over a buffer of ours; anything else writes the other one (or the result).
            int target = last ? 2 : chain[i].InPlace && holder >= 0 ? holder : holder == 0 ? 1 : 0;
            Span<float> destination = target switch { 0 => a, 1 => b, _ => result };
            Step(chain, shapes, i, fused, source, destination, scratch, batch, threads);
            source = destination;
            holder = target;
            i += layers;
        }
    }
}
