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
        if (level != SimdLevel.Scalar && SimdSupport.HasGather && n == 2 && m == 4 && groups % 4 == 0) { Spmv24Gather(groups, positions, values, x, y, bias, first, end); return; }
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

    /// <summary>2:4 at batch 1: four groups (eight values) per step, their columns decoded in registers, one AVX2 gather.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Spmv24Gather(int groups, byte* positions, float* values, float* x, float* y, float* bias, int first, int end)
    {
        // Lane k of 8 takes group k/2's position (k even: bits 0-1, odd: bits 2-3) and adds the group's base column.
        Vector256<int> shift = Vector256.Create(0, 2, 0, 2, 0, 2, 0, 2);
        Vector256<int> groupOf = Vector256.Create(0, 0, 1, 1, 2, 2, 3, 3);
        Vector256<int> three = Vector256.Create(3);
        for (int r = first; r < end; r++)
        {
            byte* p = positions + (long)r * groups;
            float* v = values + (long)r * groups * 2;
            Vector256<float> acc = Vector256<float>.Zero;
            for (int g = 0; g < groups; g += 4)
            {
                Vector128<int> four = Sse41.ConvertToVector128Int32(p + g);   // reads exactly the four groups' bytes
                Vector256<int> words = Avx2.PermuteVar8x32(Vector256.Create(four, four), groupOf);
                Vector256<int> within = Avx2.And(Avx2.ShiftRightLogicalVariable(words.AsUInt32(), shift.AsUInt32()).AsInt32(), three);
                Vector256<int> columns = Avx2.Add(Avx2.ShiftLeftLogical(Avx2.Add(groupOf, Vector256.Create(g)), 2), within);
                acc = Fma.MultiplyAdd(Avx.LoadVector256(v + g * 2), Avx2.GatherVector256(x, columns, 4), acc);
            }
            y[r] = (bias == null ? 0 : bias[r]) + Vector256.Sum(acc);
        }
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
