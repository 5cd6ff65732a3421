using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Pruning.Sparse.Kernels;

/// <summary>
/// N:M × dense kernels over a range of rows; operands feature-major as in <see cref="CsrKernels"/>. Every row has
/// G = cols / M groups of M inputs with exactly N stored values each (zeros where a group had fewer non-zeros), so
/// rows need no pointers. A group's N in-group positions are packed log2(M) bits each into one byte (2:4) or two
/// little-endian bytes (4:8): 4 bits of index per value.
/// </summary>
internal static unsafe class NmKernels
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Word(byte* positions, long group, int m) => m == 4 ? positions[group] : ((ushort*)positions)[group];

    /// <summary>y[r] = bias[r] + Σ values·x[column] for rows [first, end) (batch 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Spmv(SimdLevel level, int n, int m, int groups, byte* positions, float* values, float* x, float* y, float* bias, int first, int end)
    {
        if (level != SimdLevel.Scalar && SimdSupport.HasGather && n == 2 && m == 4 && groups % 4 == 0) { Spmv24(groups, positions, values, x, y, bias, first, end); return; }
        if (level != SimdLevel.Scalar && SimdSupport.HasGather && n == 4 && m == 8 && groups % 2 == 0) { Spmv48(groups, positions, values, x, y, bias, first, end); return; }
        int bits = m == 4 ? 2 : m == 8 ? 3 : 4, mask = m - 1;
        for (int r = first; r < end; r++)
        {
            float s0 = 0, s1 = 0;
            float* v = values + (long)r * groups * n;
            for (int g = 0; g < groups; g++)
            {
                int word = Word(positions, (long)r * groups + g, m);
                float* xg = x + g * m;
                int t = 0;
                for (; t + 1 < n; t += 2)
                {
                    s0 += v[t] * xg[(word >> (t * bits)) & mask];
                    s1 += v[t + 1] * xg[(word >> ((t + 1) * bits)) & mask];
                }
                if (t < n) s0 += v[t] * xg[(word >> (t * bits)) & mask];
                v += n;
            }
            y[r] = (bias == null ? 0 : bias[r]) + (s0 + s1);
        }
    }

    /// <summary>
    /// 2:4 at batch 1 without a gather: four groups (eight values) per step. The 16 inputs they cover are two contiguous
    /// loads; a lane permute picks each value's input (its position plus 4 for the odd group of each half) and a blend
    /// joins the halves. Contiguous loads run at bandwidth; a gather would cost a load per value.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Spmv24(int groups, byte* positions, float* values, float* x, float* y, float* bias, int first, int end)
    {
        // Lane k of 8 takes group k/2's position (k even: bits 0-1, odd: bits 2-3).
        Vector256<int> shift = Vector256.Create(0, 2, 0, 2, 0, 2, 0, 2);
        Vector256<int> groupOf = Vector256.Create(0, 0, 1, 1, 2, 2, 3, 3);
        Vector256<int> half = Vector256.Create(0, 0, 4, 4, 0, 0, 4, 4);
        Vector256<int> three = Vector256.Create(3);
        for (int r = first; r < end; r++)
        {
            byte* p = positions + (long)r * groups;
            float* v = values + (long)r * groups * 2;
            Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero;
            int g = 0;
            for (; g + 8 <= groups; g += 8)
            {
                a0 = Fma.MultiplyAdd(Avx.LoadVector256(v + g * 2), Pick24(p + g, x + g * 4, shift, groupOf, half, three), a0);
                a1 = Fma.MultiplyAdd(Avx.LoadVector256(v + g * 2 + 8), Pick24(p + g + 4, x + g * 4 + 16, shift, groupOf, half, three), a1);
            }
            for (; g < groups; g += 4)
                a0 = Fma.MultiplyAdd(Avx.LoadVector256(v + g * 2), Pick24(p + g, x + g * 4, shift, groupOf, half, three), a0);
            y[r] = (bias == null ? 0 : bias[r]) + Vector256.Sum(a0 + a1);
        }
    }

    /// <summary>4:8 at batch 1, the same way: two groups (eight values) per step, each group's eight inputs one load.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Spmv48(int groups, byte* positions, float* values, float* x, float* y, float* bias, int first, int end)
    {
        Vector256<int> shift = Vector256.Create(0, 3, 6, 9, 0, 3, 6, 9);
        Vector256<int> seven = Vector256.Create(7);
        for (int r = first; r < end; r++)
        {
            ushort* p = (ushort*)positions + (long)r * groups;
            float* v = values + (long)r * groups * 4;
            Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero;
            int g = 0;
            for (; g + 4 <= groups; g += 4)
            {
                a0 = Fma.MultiplyAdd(Avx.LoadVector256(v + g * 4), Pick48(p + g, x + g * 8, shift, seven), a0);
                a1 = Fma.MultiplyAdd(Avx.LoadVector256(v + g * 4 + 8), Pick48(p + g + 2, x + g * 8 + 16, shift, seven), a1);
            }
            for (; g < groups; g += 2)
                a0 = Fma.MultiplyAdd(Avx.LoadVector256(v + g * 4), Pick48(p + g, x + g * 8, shift, seven), a0);
            y[r] = (bias == null ? 0 : bias[r]) + Vector256.Sum(a0 + a1);
        }
    }

    /// <summary>The eight inputs two 4:8 groups select, from the 16 they cover.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Pick48(ushort* words, float* x, Vector256<int> shift, Vector256<int> seven)
    {
        Vector256<int> spread = Vector256.Create(Vector128.Create((int)words[0]), Vector128.Create((int)words[1]));
        Vector256<int> lane = Avx2.And(Avx2.ShiftRightLogicalVariable(spread.AsUInt32(), shift.AsUInt32()).AsInt32(), seven);
        Vector256<float> low = Avx2.PermuteVar8x32(Avx.LoadVector256(x), lane), high = Avx2.PermuteVar8x32(Avx.LoadVector256(x + 8), lane);
        return Avx.Blend(low, high, 0b1111_0000);
    }

    /// <summary>The eight inputs four 2:4 groups select, from the 16 they cover.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Pick24(byte* words, float* x, Vector256<int> shift, Vector256<int> groupOf, Vector256<int> half, Vector256<int> three)
    {
        Vector128<int> four = Sse41.ConvertToVector128Int32(words);   // reads exactly the four groups' bytes
        Vector256<int> spread = Avx2.PermuteVar8x32(Vector256.Create(four, four), groupOf);
        Vector256<int> lane = Avx2.Add(Avx2.And(Avx2.ShiftRightLogicalVariable(spread.AsUInt32(), shift.AsUInt32()).AsInt32(), three), half);
        Vector256<float> low = Avx2.PermuteVar8x32(Avx.LoadVector256(x), lane), high = Avx2.PermuteVar8x32(Avx.LoadVector256(x + 8), lane);
        return Avx.Blend(low, high, 0b1111_0000);
    }

    /// <summary>y[r, :] = bias[r] + Σ values·x[column, :] for rows [first, end), batch ≥ 1, vectorized across the batch.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Spmm(SimdLevel level, int n, int m, int groups, byte* positions, float* values, float* x, float* y, float* bias, int batch, int first, int end)
    {
        switch (level)
        {
            case SimdLevel.Vector512: SpmmVector<Lanes512, Vector512<float>>(n, m, groups, positions, values, x, y, bias, batch, first, end); break;
            case SimdLevel.Vector256: SpmmVector<Lanes256, Vector256<float>>(n, m, groups, positions, values, x, y, bias, batch, first, end); break;
            default: SpmmTail(n, m, groups, positions, values, x, y, bias, batch, 0, first, end); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SpmmVector<TL, TVec>(int n, int m, int groups, byte* positions, float* values, float* x, float* y, float* bias, int batch, int first, int end)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        int lanes = TL.Count, bits = m == 4 ? 2 : m == 8 ? 3 : 4, mask = m - 1;
        int vectorEnd = batch - batch % lanes;
        for (int r = first; r < end; r++)
        {
            long row = (long)r * groups;
            float* vr = values + (long)r * groups * n;
            TVec b0 = TL.Broadcast(bias == null ? 0 : bias[r]);
            float* yr = y + (long)r * batch;
            int b = 0;
            for (; b + 4 * lanes <= batch; b += 4 * lanes)
            {
                TVec a0 = b0, a1 = b0, a2 = b0, a3 = b0;
                float* v = vr;
                for (int g = 0; g < groups; g++, v += n)
                {
                    int word = Word(positions, row + g, m);
                    for (int t = 0; t < n; t++)
                    {
                        TVec w = TL.Broadcast(v[t]);
                        float* xr = x + (long)(g * m + ((word >> (t * bits)) & mask)) * batch + b;
                        a0 = TL.MulAdd(w, TL.Load(xr), a0);
                        a1 = TL.MulAdd(w, TL.Load(xr + lanes), a1);
                        a2 = TL.MulAdd(w, TL.Load(xr + 2 * lanes), a2);
                        a3 = TL.MulAdd(w, TL.Load(xr + 3 * lanes), a3);
                    }
                }
                TL.Store(yr + b, a0); TL.Store(yr + b + lanes, a1); TL.Store(yr + b + 2 * lanes, a2); TL.Store(yr + b + 3 * lanes, a3);
            }
            for (; b < vectorEnd; b += lanes)
            {
                TVec a0 = b0;
                float* v = vr;
                for (int g = 0; g < groups; g++, v += n)
                {
                    int word = Word(positions, row + g, m);
                    for (int t = 0; t < n; t++)
                        a0 = TL.MulAdd(TL.Broadcast(v[t]), TL.Load(x + (long)(g * m + ((word >> (t * bits)) & mask)) * batch + b), a0);
                }
                TL.Store(yr + b, a0);
            }
        }
        if (vectorEnd < batch) SpmmTail(n, m, groups, positions, values, x, y, bias, batch, vectorEnd, first, end);
    }

    /// <summary>The reference: batch columns [fromColumn, batch) one at a time, in plain scalar code.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SpmmTail(int n, int m, int groups, byte* positions, float* values, float* x, float* y, float* bias, int batch, int fromColumn, int first, int end)
    {
        int bits = m == 4 ? 2 : m == 8 ? 3 : 4, mask = m - 1;
        for (int r = first; r < end; r++)
            for (int b = fromColumn; b < batch; b++)
            {
                float s = bias == null ? 0 : bias[r];
                float* v = values + (long)r * groups * n;
                for (int g = 0; g < groups; g++, v += n)
                {
                    int word = Word(positions, (long)r * groups + g, m);
                    for (int t = 0; t < n; t++) s += v[t] * x[(long)(g * m + ((word >> (t * bits)) & mask)) * batch + b];
                }
                y[(long)r * batch + b] = s;
            }
    }
}
