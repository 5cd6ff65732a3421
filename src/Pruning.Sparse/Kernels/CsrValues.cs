using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Pruning.Sparse.Kernels;

/// <summary>
/// How a CSR matrix stores its values, as a struct the kernels are generic over: the JIT compiles one copy of each
/// kernel per encoding, with the decode inlined into registers (nothing is decoded into memory).
/// A value is <c>Scale(row) · At(j)</c>; encodings without a per-row scale say so with <see cref="Scaled"/> = false,
/// and the kernels then never multiply by it.
/// </summary>
internal unsafe interface ICsrValues
{
    /// <summary>True when each row's values are multiplied by <see cref="Scale"/>.</summary>
    bool Scaled { get; }

    /// <summary>Row <paramref name="row"/>'s scale (1 when not <see cref="Scaled"/>).</summary>
    float Scale(int row);

    /// <summary>The j-th stored value, unscaled.</summary>
    float At(int j);

    /// <summary>Values j … j + 7, unscaled (AVX2).</summary>
    Vector256<float> Load8(int j);
}

/// <summary>float32 values: 4 bytes per non-zero.</summary>
internal readonly unsafe struct Float32Values(float* values) : ICsrValues
{
    public bool Scaled => false;
    public float Scale(int row) => 1f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float At(int j) => values[j];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<float> Load8(int j) => Avx.LoadVector256(values + j);
}

/// <summary>
/// IEEE half-precision values (stored as their bits): 2 bytes per non-zero, 11 significant bits. Decoded without F16C:
/// the exponent and mantissa are moved into a float's fields and multiplied by 2¹¹² (which also decodes subnormals
/// exactly), then the sign is put back. Infinities and NaNs never reach the kernels: the matrix refuses them.
/// </summary>
internal readonly unsafe struct Float16Values(ushort* values) : ICsrValues
{
    private const float Rebias = 5.192296858534828e33f;   // 2^112: half bias 15 → float bias 127

    public bool Scaled => false;
    public float Scale(int row) => 1f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float At(int j) => Decode(values[j]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<float> Load8(int j)
    {
        Vector256<int> h = Avx2.ConvertToVector256Int32(values + j);
        Vector256<float> magnitude = Avx.Multiply(Avx2.ShiftLeftLogical(Avx2.And(h, Vector256.Create(0x7fff)), 13).AsSingle(), Vector256.Create(Rebias));
        return Avx.Or(magnitude, Avx2.ShiftLeftLogical(Avx2.And(h, Vector256.Create(0x8000)), 16).AsSingle());
    }

    /// <summary>The scalar decode, the same arithmetic as the vector one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Decode(ushort h)
    {
        float magnitude = BitConverter.Int32BitsToSingle((h & 0x7fff) << 13) * Rebias;
        return (h & 0x8000) != 0 ? -magnitude : magnitude;
    }
}

/// <summary>
/// int8 values with one float32 scale per row (symmetric: value = scale · q, q in [−127, 127]): 1 byte per non-zero
/// plus 4 per row. The kernels sum q·x and multiply each row's sum by its scale once.
/// </summary>
internal readonly unsafe struct Int8Values(sbyte* values, float* scales) : ICsrValues
{
    public bool Scaled => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Scale(int row) => scales[row];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float At(int j) => values[j];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<float> Load8(int j) => Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(values + j));
}
