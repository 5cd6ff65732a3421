namespace Pruning.Sparse.Layers;

/// <summary>The element-wise functions an <see cref="ActivationLayer"/> applies.</summary>
public enum ActivationKind : byte
{
    /// <summary>max(x, 0).</summary>
    ReLU = 1,
    /// <summary>x for x ≥ 0, slope·x otherwise.</summary>
    LeakyReLU = 2,
    /// <summary>tanh(x).</summary>
    Tanh = 3,
    /// <summary>1 / (1 + e^−x).</summary>
    Sigmoid = 4,
}

/// <summary>An element-wise activation, applied in place.</summary>
public sealed class ActivationLayer : SparseLayer
{
    /// <summary>Creates the layer; <paramref name="slope"/> is LeakyReLU's negative slope.</summary>
    public ActivationLayer(ActivationKind kind, float slope = 0.01f)
    {
        if (!Enum.IsDefined(kind)) throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown activation.");
        if (!float.IsFinite(slope)) throw new ArgumentOutOfRangeException(nameof(slope), slope, "Slope must be finite.");
        Kind = kind;
        Slope = slope;
    }

    /// <summary>The function.</summary>
    public ActivationKind Kind { get; }

    /// <summary>LeakyReLU's negative slope.</summary>
    public float Slope { get; }

    /// <inheritdoc />
    public override string Describe() => Kind == ActivationKind.LeakyReLU ? $"LeakyReLU({Slope})" : Kind.ToString();

    /// <inheritdoc />
    public override FeatureShape OutputShape(FeatureShape input) => input;

    internal override bool InPlace => true;

    internal override void Forward(ReadOnlySpan<float> input, FeatureShape shape, Span<float> output, int batch, Span<float> scratch, int threads)
    {
        int n = shape.Size * batch;
        ReadOnlySpan<float> x = input[..n];
        Span<float> y = output[..n];
        switch (Kind)
        {
            case ActivationKind.ReLU:
                {
                    int i = 0;
                    if (System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated)
                        for (; i + 8 <= n; i += 8)
                            System.Runtime.Intrinsics.Vector256.StoreUnsafe(System.Runtime.Intrinsics.Vector256.Max(System.Runtime.Intrinsics.Vector256.Create(x.Slice(i, 8)), System.Runtime.Intrinsics.Vector256<float>.Zero), ref System.Runtime.InteropServices.MemoryMarshal.GetReference(y), (nuint)i);
                    for (; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0f;
                    break;
                }
            case ActivationKind.Tanh: for (int i = 0; i < n; i++) y[i] = MathF.Tanh(x[i]); break;
            case ActivationKind.Sigmoid: for (int i = 0; i < n; i++) y[i] = 1f / (1f + MathF.Exp(-x[i])); break;
            default: for (int i = 0; i < n; i++) y[i] = x[i] >= 0 ? x[i] : Slope * x[i]; break;
        }
    }
}
