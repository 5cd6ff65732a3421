using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Pruning.Sparse.Kernels;

/// <summary>A block shape as static members, so each shape's kernel is its own fully specialized copy.</summary>
internal interface IBlockShape
{
    /// <summary>Rows per block (1 or 4).</summary>
    static abstract int R { get; }

    /// <summary>Columns per block (1 or 4).</summary>
    static abstract int C { get; }
}

internal readonly struct Block1x4 : IBlockShape { public static int R => 1; public static int C => 4; }

internal readonly struct Block4x1 : IBlockShape { public static int R => 4; public static int C => 1; }

internal readonly struct Block4x4 : IBlockShape { public static int R => 4; public static int C => 4; }

/// <summary>
/// Block-sparse rows (BSR) × dense kernels over a range of block rows; operands feature-major as in
/// <see cref="CsrKernels"/>. A block is R×C row-major floats at block column <c>columns[j]</c> (covering input
/// features columns[j]·C … +C). Blocks of 4 rows load each input row once for four outputs (the batched kernel's
/// loads drop fourfold); blocks of 4 columns read 4 consecutive inputs per index (batch 1 needs no gather).
/// </summary>
internal static unsafe class BsrKernels
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Column<TIndex>(TIndex* columns, int j) where TIndex : unmanaged =>
        typeof(TIndex) == typeof(ushort) ? ((ushort*)columns)[j] : ((int*)columns)[j];

    /// <summary>y[r] = bias[r] + Σ blocks·x for the rows of block rows [first, end) (batch 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Spmv<TShape, TIndex>(SimdLevel level, int* blockRows, TIndex* columns, float* values, float* x, float* y, float* bias, int first, int end)
        where TShape : struct, IBlockShape where TIndex : unmanaged
    {
        if (level == SimdLevel.Scalar || !Vector128.IsHardwareAccelerated)
        {
            SpmmTail<TShape, TIndex>(blockRows, columns, values, x, y, bias, 1, 0, first, end);
            return;
        }
        int r = TShape.R, c = TShape.C;
        for (int br = first; br < end; br++)
        {
            int start = blockRows[br], stop = blockRows[br + 1];
            if (r == 1)
            {
                // 1×4: four consecutive inputs per block; two accumulators over alternate blocks.
                Vector128<float> a0 = Vector128<float>.Zero, a1 = Vector128<float>.Zero;
                int j = start;
                for (; j + 1 < stop; j += 2)
                {
                    a0 = Vector128.FusedMultiplyAdd(Vector128.Load(values + (long)j * 4), Vector128.Load(x + (long)Column(columns, j) * 4), a0);
                    a1 = Vector128.FusedMultiplyAdd(Vector128.Load(values + (long)(j + 1) * 4), Vector128.Load(x + (long)Column(columns, j + 1) * 4), a1);
                }
                if (j < stop) a0 = Vector128.FusedMultiplyAdd(Vector128.Load(values + (long)j * 4), Vector128.Load(x + (long)Column(columns, j) * 4), a0);
                y[br] = (bias == null ? 0 : bias[br]) + Vector128.Sum(a0 + a1);
            }
            else if (c == 1)
            {
                // 4×1: one input broadcast, times a column of four weights, into the four rows' sums.
                Vector128<float> a0 = Vector128<float>.Zero, a1 = Vector128<float>.Zero;
                int j = start;
                for (; j + 1 < stop; j += 2)
                {
                    a0 = Vector128.FusedMultiplyAdd(Vector128.Load(values + (long)j * 4), Vector128.Create(x[Column(columns, j)]), a0);
                    a1 = Vector128.FusedMultiplyAdd(Vector128.Load(values + (long)(j + 1) * 4), Vector128.Create(x[Column(columns, j + 1)]), a1);
                }
                if (j < stop) a0 = Vector128.FusedMultiplyAdd(Vector128.Load(values + (long)j * 4), Vector128.Create(x[Column(columns, j)]), a0);
                Vector128<float> sum = a0 + a1;
                if (bias != null) sum += Vector128.Load(bias + (long)br * 4);
                sum.Store(y + (long)br * 4);
            }
            else
            {
                // 4×4: four inputs, four rows of four weights.
                Vector128<float> a0 = Vector128<float>.Zero, a1 = Vector128<float>.Zero, a2 = Vector128<float>.Zero, a3 = Vector128<float>.Zero;
                for (int j = start; j < stop; j++)
                {
                    Vector128<float> xv = Vector128.Load(x + (long)Column(columns, j) * 4);
                    float* w = values + (long)j * 16;
                    a0 = Vector128.FusedMultiplyAdd(Vector128.Load(w), xv, a0);
                    a1 = Vector128.FusedMultiplyAdd(Vector128.Load(w + 4), xv, a1);
                    a2 = Vector128.FusedMultiplyAdd(Vector128.Load(w + 8), xv, a2);
                    a3 = Vector128.FusedMultiplyAdd(Vector128.Load(w + 12), xv, a3);
                }
                long row = (long)br * 4;
                y[row] = (bias == null ? 0 : bias[row]) + Vector128.Sum(a0);
                y[row + 1] = (bias == null ? 0 : bias[row + 1]) + Vector128.Sum(a1);
                y[row + 2] = (bias == null ? 0 : bias[row + 2]) + Vector128.Sum(a2);
                y[row + 3] = (bias == null ? 0 : bias[row + 3]) + Vector128.Sum(a3);
            }
        }
    }

    /// <summary>y[r, :] = bias[r] + Σ blocks·x[:, :] for the rows of block rows [first, end), batch ≥ 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Spmm<TShape, TIndex>(SimdLevel level, int* blockRows, TIndex* columns, float* values, float* x, float* y, float* bias, int batch, int first, int end)
        where TShape : struct, IBlockShape where TIndex : unmanaged
    {
        switch (level)
        {
            case SimdLevel.Vector512: SpmmVector<Lanes512, Vector512<float>, TShape, TIndex>(blockRows, columns, values, x, y, bias, batch, first, end); break;
            case SimdLevel.Vector256: SpmmVector<Lanes256, Vector256<float>, TShape, TIndex>(blockRows, columns, values, x, y, bias, batch, first, end); break;
            default: SpmmTail<TShape, TIndex>(blockRows, columns, values, x, y, bias, batch, 0, first, end); break;
        }
    }

    /// <summary>
    /// Vectorized across the batch, two vectors at a time: a block of four rows keeps 8 accumulators and loads each of its
    /// C input rows once for the four rows; a block of one row keeps 2 and walks its C inputs.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SpmmVector<TL, TVec, TShape, TIndex>(int* blockRows, TIndex* columns, float* values, float* x, float* y, float* bias, int batch, int first, int end)
        where TL : struct, ILanes<TVec> where TVec : struct where TShape : struct, IBlockShape where TIndex : unmanaged
    {
        int n = TL.Count, r = TShape.R, c = TShape.C, size = r * c;
        int vectorEnd = batch - batch % n;
        for (int br = first; br < end; br++)
        {
            int start = blockRows[br], stop = blockRows[br + 1];
            long row0 = (long)br * r;
            TVec b0 = TL.Broadcast(bias == null ? 0 : bias[row0]);
            TVec b1 = r == 4 ? TL.Broadcast(bias == null ? 0 : bias[row0 + 1]) : b0;
            TVec b2 = r == 4 ? TL.Broadcast(bias == null ? 0 : bias[row0 + 2]) : b0;
            TVec b3 = r == 4 ? TL.Broadcast(bias == null ? 0 : bias[row0 + 3]) : b0;
            int b = 0;
            for (; b + 2 * n <= batch; b += 2 * n)
            {
                TVec a00 = b0, a01 = b0, a10 = b1, a11 = b1, a20 = b2, a21 = b2, a30 = b3, a31 = b3;
                for (int j = start; j < stop; j++)
                {
                    float* w = values + (long)j * size;
                    long column = (long)Column(columns, j) * c;
                    for (int k = 0; k < c; k++)
                    {
                        float* xr = x + (column + k) * batch + b;
                        TVec x0 = TL.Load(xr), x1 = TL.Load(xr + n);
                        TVec w0 = TL.Broadcast(w[k]);
                        a00 = TL.MulAdd(w0, x0, a00);
                        a01 = TL.MulAdd(w0, x1, a01);
                        if (r == 4)
                        {
                            TVec w1 = TL.Broadcast(w[c + k]), w2 = TL.Broadcast(w[2 * c + k]), w3 = TL.Broadcast(w[3 * c + k]);
                            a10 = TL.MulAdd(w1, x0, a10);
                            a11 = TL.MulAdd(w1, x1, a11);
                            a20 = TL.MulAdd(w2, x0, a20);
                            a21 = TL.MulAdd(w2, x1, a21);
                            a30 = TL.MulAdd(w3, x0, a30);
                            a31 = TL.MulAdd(w3, x1, a31);
                        }
                    }
                }
                float* yr = y + row0 * batch + b;
                TL.Store(yr, a00); TL.Store(yr + n, a01);
                if (r == 4)
                {
                    TL.Store(yr + batch, a10); TL.Store(yr + batch + n, a11);
                    TL.Store(yr + 2L * batch, a20); TL.Store(yr + 2L * batch + n, a21);
                    TL.Store(yr + 3L * batch, a30); TL.Store(yr + 3L * batch + n, a31);
                }
            }
            for (; b < vectorEnd; b += n)
            {
                TVec a0 = b0, a1 = b1, a2 = b2, a3 = b3;
                for (int j = start; j < stop; j++)
                {
                    float* w = values + (long)j * size;
                    long column = (long)Column(columns, j) * c;
                    for (int k = 0; k < c; k++)
                    {
                        TVec xv = TL.Load(x + (column + k) * batch + b);
                        a0 = TL.MulAdd(TL.Broadcast(w[k]), xv, a0);
                        if (r == 4)
                        {
                            a1 = TL.MulAdd(TL.Broadcast(w[c + k]), xv, a1);
                            a2 = TL.MulAdd(TL.Broadcast(w[2 * c + k]), xv, a2);
                            a3 = TL.MulAdd(TL.Broadcast(w[3 * c + k]), xv, a3);
                        }
                    }
                }
                float* yr = y + row0 * batch + b;
                TL.Store(yr, a0);
                if (r == 4)
                {
                    TL.Store(yr + batch, a1);
                    TL.Store(yr + 2L * batch, a2);
                    TL.Store(yr + 3L * batch, a3);
                }
            }
        }
        if (vectorEnd < batch) SpmmTail<TShape, TIndex>(blockRows, columns, values, x, y, bias, batch, vectorEnd, first, end);
    }

    /// <summary>The reference: batch columns [fromColumn, batch) one at a time, in plain scalar code.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SpmmTail<TShape, TIndex>(int* blockRows, TIndex* columns, float* values, float* x, float* y, float* bias, int batch, int fromColumn, int first, int end)
        where TShape : struct, IBlockShape where TIndex : unmanaged
    {
        int r = TShape.R, c = TShape.C;
        for (int br = first; br < end; br++)
            for (int i = 0; i < r; i++)
            {
                long row = (long)br * r + i;
                for (int b = fromColumn; b < batch; b++)
                {
                    float s = bias == null ? 0 : bias[row];
                    for (int j = blockRows[br]; j < blockRows[br + 1]; j++)
                    {
                        float* w = values + (long)j * r * c + i * c;
                        long column = (long)Column(columns, j) * c;
                        for (int k = 0; k < c; k++) s += w[k] * x[(column + k) * batch + b];
                    }
                    y[row * batch + b] = s;
                }
            }
    }
}
