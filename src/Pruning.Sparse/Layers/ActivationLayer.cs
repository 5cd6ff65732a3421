using System.Runtime.CompilerServices;
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
    /// <summary>min(max(x, 0), 6), MobileNet's activation (files holding it are version 2).</summary>
    ReLU6 = 5,
    /// <summary>x · min(max(x + 3, 0), 6) / 6, MobileNetV3's activation (version 2).</summary>
    Hardswish = 6,
    /// <summary>min(max(x + 3, 0), 6) / 6, MobileNetV3's squeeze-and-excitation gate (version 2).</summary>
    Hardsigmoid = 7,
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

    internal override unsafe void Forward(ReadOnlySpan<float> input, FeatureShape shape, Span<float> output, int batch, Span<float> scratch, int threads)
    {
        int n = shape.Size * batch;
        if (input.Length < n || output.Length < n) throw new ArgumentException("The buffers are smaller than the shape.", nameof(input));
        // Element-wise, in contiguous slices across the kernel threads (ReLU is a memory pass; tanh and sigmoid cost more per element).
        long work = Kind is ActivationKind.Tanh or ActivationKind.Sigmoid ? 8L * n : n;
        int[] bounds = Kernels.Parallelism.Even(n, threads, work, unit: 64);
        fixed (float* px = input, py = output)
        {
            nint src = (nint)px, dst = (nint)py;
            ActivationKind kind = Kind;
            float slope = Slope;
            Kernels.Parallelism.Run(bounds, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (first, end) => Apply(kind, slope, (float*)src, (float*)dst, first, end));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Apply(ActivationKind kind, float slope, float* x, float* y, int first, int end)
    {
        switch (kind)
        {
            case ActivationKind.ReLU:
                {
                    int i = first;
                    if (System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated)
                        for (; i + 8 <= end; i += 8)
                            System.Runtime.Intrinsics.Vector256.Store(System.Runtime.Intrinsics.Vector256.Max(System.Runtime.Intrinsics.Vector256.Load(x + i), System.Runtime.Intrinsics.Vector256<float>.Zero), y + i);
                    for (; i < end; i++) y[i] = x[i] < 0 ? 0f : x[i];   // NaN passes, as in the vector body and PyTorch
                    break;
                }
            case ActivationKind.ReLU6:
                {
                    int i = first;
                    if (System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated)
                        for (; i + 8 <= end; i += 8)
                            System.Runtime.Intrinsics.Vector256.Store(System.Runtime.Intrinsics.Vector256.Min(System.Runtime.Intrinsics.Vector256.Max(
                                System.Runtime.Intrinsics.Vector256.Load(x + i), System.Runtime.Intrinsics.Vector256<float>.Zero), System.Runtime.Intrinsics.Vector256.Create(6f)), y + i);
                    for (; i < end; i++) y[i] = x[i] < 0 ? 0f : x[i] > 6 ? 6f : x[i];
                    break;
                }
            case ActivationKind.Tanh: for (int i = first; i < end; i++) y[i] = MathF.Tanh(x[i]); break;
            case ActivationKind.Hardswish: for (int i = first; i < end; i++) y[i] = x[i] * (MathF.Min(MathF.Max(x[i] + 3f, 0f), 6f) / 6f); break;
            case ActivationKind.Hardsigmoid: for (int i = first; i < end; i++) y[i] = MathF.Min(MathF.Max(x[i] + 3f, 0f), 6f) / 6f; break;
            case ActivationKind.Sigmoid: for (int i = first; i < end; i++) y[i] = 1f / (1f + MathF.Exp(-x[i])); break;
            default: for (int i = first; i < end; i++) y[i] = x[i] >= 0 ? x[i] : slope * x[i]; break;
        }
    }
}
