using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Pruning.Sparse.Layers;

namespace Pruning.Sparse.Kernels;

/// <summary>
/// What a convolution applies as it stores its output (<see cref="ShiftedOutput"/>), in place of the layers after it:
/// ReLU or ReLU6 (NaN passes through, as in <see cref="ActivationLayer"/> and PyTorch) and/or 2×2 max pooling at
/// stride 2, or nothing. <see cref="LayerChains.FusedAfter"/> decides when.
/// </summary>
internal readonly struct Epilogue
{
    private readonly ActivationKind _kind;

    private Epilogue(ActivationKind kind, bool pool)
    {
        _kind = kind;
        PoolsMax2x2 = pool;
    }

    /// <summary>Nothing: the layer's plain output.</summary>
    public static Epilogue None => default;

    /// <summary>Whether <paramref name="layer"/> can be applied as a store's activation (ReLU and ReLU6).</summary>
    public static bool Fuses(ActivationLayer layer) => layer.Kind is ActivationKind.ReLU or ActivationKind.ReLU6;

    /// <summary>Whether <paramref name="layer"/> is the pooling a store can apply: 2×2 max at stride 2, no padding, floor mode (or ceil over even extents).</summary>
    public static bool Fuses(Pool2dLayer layer, FeatureShape input) =>
        layer is { Kind: PoolKind.Max, Kernel: (2, 2), Stride: (2, 2), Padding: (0, 0) } && (!layer.CeilMode || (input.Height % 2 == 0 && input.Width % 2 == 0));

    /// <summary>The epilogue of <paramref name="activation"/> (null: none) and, when <paramref name="pool"/>, 2×2 max pooling after it.</summary>
    public static Epilogue Of(ActivationLayer? activation, bool pool) => new(activation?.Kind ?? 0, pool);

    /// <summary>Whether the store pools 2×2 windows at stride 2 (after the activation).</summary>
    public bool PoolsMax2x2 { get; }

    /// <summary>The layers of a chain this covers after the layer that applies it: the activation and the pooling.</summary>
    public int Layers => (_kind != 0 ? 1 : 0) + (PoolsMax2x2 ? 1 : 0);

    private static readonly ActivationLayer s_relu = new(ActivationKind.ReLU), s_relu6 = new(ActivationKind.ReLU6);

    /// <summary>Applies the activation to a whole output, for the paths that cannot apply it as they store.</summary>
    public void ApplyInPlace(Span<float> output, FeatureShape shape, int batch, int threads)
    {
        if (_kind != 0) (_kind == ActivationKind.ReLU ? s_relu : s_relu6).Forward(output, shape, output, batch, default, threads);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<float> Apply(Vector256<float> v) => _kind switch
    {
        ActivationKind.ReLU => Vector256.Max(v, Vector256<float>.Zero),
        ActivationKind.ReLU6 => Vector256.Min(Vector256.Max(v, Vector256<float>.Zero), Vector256.Create(6f)),
        _ => v,
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector128<float> Apply(Vector128<float> v) => _kind switch
    {
        ActivationKind.ReLU => Vector128.Max(v, Vector128<float>.Zero),
        ActivationKind.ReLU6 => Vector128.Min(Vector128.Max(v, Vector128<float>.Zero), Vector128.Create(6f)),
        _ => v,
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Apply(float v) => _kind switch
    {
        ActivationKind.ReLU => v < 0 ? 0f : v,
        ActivationKind.ReLU6 => v < 0 ? 0f : v > 6 ? 6f : v,
        _ => v,
    };
}
