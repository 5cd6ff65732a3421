using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Pruning.Sparse.Kernels;

/// <summary>The vector width a kernel runs with. <see cref="SimdSupport.Best"/> picks the widest the CPU accelerates.</summary>
internal enum SimdLevel
{
    /// <summary>Plain scalar loops; runs everywhere and is the reference the vector paths are tested against.</summary>
    Scalar,
    /// <summary>256-bit vectors (AVX2 + FMA on x64). SpMV uses the AVX2 gather.</summary>
    Vector256,
    /// <summary>512-bit vectors for the batched kernels (AVX-512F); SpMV keeps the 256-bit gather, which is memory-bound anyway.</summary>
    Vector512,
}

/// <summary>What the running CPU accelerates.</summary>
internal static class SimdSupport
{
    /// <summary>The widest level this CPU runs in hardware.</summary>
    public static SimdLevel Best { get; } =
        Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? SimdLevel.Vector512
        : Vector256.IsHardwareAccelerated ? SimdLevel.Vector256
        : SimdLevel.Scalar;

    /// <summary>True when the AVX2 gather SpMV can run (x64 with AVX2 and FMA).</summary>
    internal static bool HasGather { get; } = Avx2.IsSupported && Fma.IsSupported;
}

/// <summary>
/// One vector width, as static members, so a kernel written once over <typeparamref name="TVec"/> is compiled by the
/// JIT into a separate, fully inlined copy for each width.
/// </summary>
internal interface ILanes<TVec> where TVec : struct
{
    static abstract int Count { get; }
    static abstract TVec Broadcast(float value);
    static abstract unsafe TVec Load(float* source);
    static abstract unsafe void Store(float* destination, TVec value);
    /// <summary>a·b + c.</summary>
    static abstract TVec MulAdd(TVec a, TVec b, TVec c);
    static abstract TVec Add(TVec a, TVec b);
    static abstract float Sum(TVec value);
}

internal readonly struct Lanes256 : ILanes<Vector256<float>>
{
    public static int Count => Vector256<float>.Count;
    public static Vector256<float> Broadcast(float value) => Vector256.Create(value);
    public static unsafe Vector256<float> Load(float* source) => Vector256.Load(source);
    public static unsafe void Store(float* destination, Vector256<float> value) => value.Store(destination);
    public static Vector256<float> MulAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);
    public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
    public static float Sum(Vector256<float> value) => Vector256.Sum(value);
}

internal readonly struct Lanes512 : ILanes<Vector512<float>>
{
    public static int Count => Vector512<float>.Count;
    public static Vector512<float> Broadcast(float value) => Vector512.Create(value);
    public static unsafe Vector512<float> Load(float* source) => Vector512.Load(source);
    public static unsafe void Store(float* destination, Vector512<float> value) => value.Store(destination);
    public static Vector512<float> MulAdd(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
    public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
    public static float Sum(Vector512<float> value) => Vector512.Sum(value);
}

internal readonly struct Lanes128 : ILanes<Vector128<float>>
{
    public static int Count => Vector128<float>.Count;
    public static Vector128<float> Broadcast(float value) => Vector128.Create(value);
    public static unsafe Vector128<float> Load(float* source) => Vector128.Load(source);
    public static unsafe void Store(float* destination, Vector128<float> value) => value.Store(destination);
    public static Vector128<float> MulAdd(Vector128<float> a, Vector128<float> b, Vector128<float> c) => Vector128.FusedMultiplyAdd(a, b, c);
    public static Vector128<float> Add(Vector128<float> a, Vector128<float> b) => a + b;
    public static float Sum(Vector128<float> value) => Vector128.Sum(value);
}

/// <summary>One lane: the scalar form of the vector kernels, with the same fused multiply-add, so a column gets the same bits either way.</summary>
internal readonly struct Lanes1 : ILanes<float>
{
    public static int Count => 1;
    public static float Broadcast(float value) => value;
    public static unsafe float Load(float* source) => *source;
    public static unsafe void Store(float* destination, float value) => *destination = value;
    public static float MulAdd(float a, float b, float c) => MathF.FusedMultiplyAdd(a, b, c);
    public static float Add(float a, float b) => a + b;
    public static float Sum(float value) => value;
}
