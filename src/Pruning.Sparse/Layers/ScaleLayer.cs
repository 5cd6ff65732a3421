using System.Runtime.CompilerServices;
namespace Pruning.Sparse.Layers;

/// <summary>
/// x scaled per channel by factors computed from x: a branch of layers maps the input to one value per channel
/// ([C] or [C, 1, 1]), and every value of channel c is multiplied by the factor c of its sample (squeeze-and-excitation:
/// global pooling, two 1×1 convolutions, a gate). The branch runs on buffers carved from the model's scratch.
/// </summary>
public sealed class ScaleLayer : SparseLayer
{
    /// <summary>Creates the layer from the branch that computes the factors (at least one layer).</summary>
    public ScaleLayer(IReadOnlyList<SparseLayer> factors)
    {
        ArgumentNullException.ThrowIfNull(factors);
        if (factors.Count == 0) throw new ArgumentException("The factors branch needs at least one layer.", nameof(factors));
        if (factors.Any(l => l is null)) throw new ArgumentException("The factors branch holds a null layer.", nameof(factors));
        Factors = [.. factors];
        int depth = LayerChains.Depth([this]);
        if (depth > ResidualLayer.MaxDepth)
            throw new ArgumentException($"Residual blocks, concatenations and scalings nest {depth} deep; at most {ResidualLayer.MaxDepth} are allowed.", nameof(factors));
    }

    /// <summary>The branch that computes one factor per channel from the input.</summary>
    public IReadOnlyList<SparseLayer> Factors { get; }

    /// <inheritdoc />
    public override string Describe() => $"Scale × [{string.Join(", ", Factors.Select(l => l.Describe()))}]";

    /// <inheritdoc />
    public override long StoredParameters => Factors.Sum(l => l.StoredParameters);

    /// <inheritdoc />
    public override long StoredBytes => Factors.Sum(l => l.StoredBytes);

    /// <inheritdoc />
    public override FeatureShape OutputShape(FeatureShape input) => PlanFor(input).Input;

    private sealed record Plan(FeatureShape Input, FeatureShape[] Shapes, int Widest);

    private Plan? _plan;

    private Plan PlanFor(FeatureShape input)
    {
        if (Volatile.Read(ref _plan) is { } cached && cached.Input == input) return cached;
        FeatureShape[] shapes = LayerChains.Shapes(Factors, input);
        if (shapes[^1].Size != input.Channels)
            throw new ArgumentException($"The scaling's factors branch gives {shapes[^1]} for an input of {input}; it must give one value per channel ({input.Channels}).", nameof(input));
        var plan = new Plan(input, shapes, shapes.Max(s => s.Size));
        Volatile.Write(ref _plan, plan);
        return plan;
    }

    /// <summary>Two ping-pong buffers as large as the branch's widest activation, the factors, then the layers' own scratch.</summary>
    internal override long ScratchSize(FeatureShape input, int batch)
    {
        Plan plan = PlanFor(input);
        return checked(2L * plan.Widest * batch + (long)input.Channels * batch + LayerChains.LayerScratch(Factors, plan.Shapes, batch));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal override void Forward(ReadOnlySpan<float> input, FeatureShape shape, Span<float> output, int batch, Span<float> scratch, int threads)
    {
        Plan plan = PlanFor(shape);
        int activations = plan.Widest * batch, channels = shape.Channels, plane = shape.Plane;
        Span<float> a = scratch[..activations], b = scratch.Slice(activations, activations);
        Span<float> factors = scratch.Slice(2 * activations, channels * batch), layerScratch = scratch[(2 * activations + channels * batch)..];
        LayerChains.Run(Factors, plan.Shapes, input, factors, a, b, layerScratch, batch, threads);
        // [C, N, H, W]: the plane of (channel c, sample n) is scaled by factor [c, n].
        for (int cn = 0; cn < channels * batch; cn++)
        {
            float f = factors[cn];
            ReadOnlySpan<float> x = input.Slice(cn * plane, plane);
            Span<float> y = output.Slice(cn * plane, plane);
            int p = 0;
            if (System.Numerics.Vector.IsHardwareAccelerated)
            {
                var factor = new System.Numerics.Vector<float>(f);
                for (; p + System.Numerics.Vector<float>.Count <= plane; p += System.Numerics.Vector<float>.Count)
                    (new System.Numerics.Vector<float>(x[p..]) * factor).CopyTo(y[p..]);
            }
            for (; p < plane; p++) y[p] = x[p] * f;
        }
    }
}
