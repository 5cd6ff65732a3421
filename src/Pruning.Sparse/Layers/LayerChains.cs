using System.Runtime.CompilerServices;
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

    /// <summary>Runs <paramref name="chain"/> (its shapes in <paramref name="shapes"/>) on <paramref name="input"/> (left untouched) into <paramref name="result"/>, ping-ponging through a and b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(IReadOnlyList<SparseLayer> chain, FeatureShape[] shapes, ReadOnlySpan<float> input, Span<float> result,
        Span<float> a, Span<float> b, Span<float> scratch, int batch, int threads)
    {
        input[..(shapes[0].Size * batch)].CopyTo(a);
        Span<float> current = a, next = b;
        for (int i = 0; i < chain.Count; i++)
        {
            SparseLayer layer = chain[i];
            if (layer.InPlace) layer.Forward(current, shapes[i], current, batch, scratch, threads);
            else
            {
                layer.Forward(current, shapes[i], next, batch, scratch, threads);
                Span<float> swap = current;
                current = next;
                next = swap;
            }
        }
        current[..(shapes[^1].Size * batch)].CopyTo(result);
    }
}
