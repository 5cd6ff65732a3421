using System.Runtime.CompilerServices;
namespace Pruning.Sparse.Layers;

/// <summary>
/// Branches of layers run on the same input, their outputs laid side by side along channels (torch.cat(…, 1)): an
/// Inception module, or DenseNet's [x, f(x)] with an empty branch for x. Every branch must give the same height and
/// width (or all give feature vectors). In the runtime's [C, N, H, W] layout each branch writes one contiguous slice
/// of the output, so the concatenation costs no copy beyond the branches' own.
/// </summary>
public sealed class ConcatLayer : SparseLayer
{
    /// <summary>Most branches one concatenation may have.</summary>
    public const int MaxBranches = 64;

    /// <summary>Creates the layer from two or more branches; an empty branch is the identity.</summary>
    public ConcatLayer(IReadOnlyList<IReadOnlyList<SparseLayer>> branches)
    {
        ArgumentNullException.ThrowIfNull(branches);
        if (branches.Count < 2 || branches.Count > MaxBranches)
            throw new ArgumentOutOfRangeException(nameof(branches), branches.Count, $"A concatenation needs 2 to {MaxBranches} branches.");
        if (branches.Any(b => b is null || b.Any(l => l is null))) throw new ArgumentException("A branch is null or holds a null layer.", nameof(branches));
        Branches = branches.Select(b => (IReadOnlyList<SparseLayer>)[.. b]).ToArray();
        int depth = LayerChains.Depth([this]);
        if (depth > ResidualLayer.MaxDepth)
            throw new ArgumentException($"Residual blocks and concatenations nest {depth} deep; at most {ResidualLayer.MaxDepth} are allowed.", nameof(branches));
    }

    /// <summary>The branches, in the order their outputs are laid out.</summary>
    public IReadOnlyList<IReadOnlyList<SparseLayer>> Branches { get; }

    /// <inheritdoc />
    public override string Describe() =>
        $"Concat {string.Join(" | ", Branches.Select(b => b.Count == 0 ? "identity" : $"[{string.Join(", ", b.Select(l => l.Describe()))}]"))}";

    /// <inheritdoc />
    public override long StoredParameters => Branches.SelectMany(b => b).Sum(l => l.StoredParameters);

    /// <inheritdoc />
    public override long StoredBytes => Branches.SelectMany(b => b).Sum(l => l.StoredBytes);

    /// <inheritdoc />
    public override FeatureShape OutputShape(FeatureShape input) => PlanFor(input).Output;

    /// <summary>Every branch's shapes for one input shape, the output, and the widest activation (one sample).</summary>
    private sealed record Plan(FeatureShape Input, FeatureShape[][] Branches, FeatureShape Output, int Widest);

    private Plan? _plan;

    private Plan PlanFor(FeatureShape input)
    {
        if (Volatile.Read(ref _plan) is { } cached && cached.Input == input) return cached;
        FeatureShape[][] shapes = Branches.Select(b => LayerChains.Shapes(b, input)).ToArray();
        FeatureShape first = shapes[0][^1];
        long channels = 0;
        foreach (FeatureShape[] branch in shapes)
        {
            FeatureShape last = branch[^1];
            if (last.Height != first.Height || last.Width != first.Width)
                throw new ArgumentException($"The concatenation's branches give {string.Join(", ", shapes.Select(s => s[^1]))}; they must share height and width.", nameof(input));
            channels += last.Channels;
        }
        if (channels * first.Plane >= int.MaxValue)
            throw new ArgumentException($"The concatenation gives {channels} channels of {first.Plane} values, too many for one sample.", nameof(input));
        var output = new FeatureShape((int)channels, first.Height, first.Width);
        var plan = new Plan(input, shapes, output, shapes.SelectMany(s => s).Max(s => s.Size));
        Volatile.Write(ref _plan, plan);
        return plan;
    }

    /// <summary>Two ping-pong buffers as large as the widest activation, then the layers' own scratch.</summary>
    internal override long ScratchSize(FeatureShape input, int batch)
    {
        Plan plan = PlanFor(input);
        long scratch = 0;
        for (int i = 0; i < Branches.Count; i++) scratch = Math.Max(scratch, LayerChains.LayerScratch(Branches[i], plan.Branches[i], batch));
        return checked(2L * plan.Widest * batch + scratch);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal override void Forward(ReadOnlySpan<float> input, FeatureShape shape, Span<float> output, int batch, Span<float> scratch, int threads)
    {
        Plan plan = PlanFor(shape);
        int activations = plan.Widest * batch;
        Span<float> a = scratch[..activations], b = scratch.Slice(activations, activations), layerScratch = scratch[(2 * activations)..];
        int offset = 0;
        for (int i = 0; i < Branches.Count; i++)
        {
            int size = plan.Branches[i][^1].Size * batch;
            Span<float> slice = output.Slice(offset, size);
            if (Branches[i].Count == 0) input[..size].CopyTo(slice);
            else LayerChains.Run(Branches[i], plan.Branches[i], input, slice, a, b, layerScratch, batch, threads);
            offset += size;
        }
    }
}
