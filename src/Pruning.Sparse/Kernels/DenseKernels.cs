using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Pruning.Sparse.Kernels;

/// <summary>
/// Dense row-major weight × feature-major input, for layers where CSR would be slower (low sparsity).
/// Same operand layout as <see cref="CsrKernels"/>: x is [cols, batch], y is [rows, batch].
/// </summary>
internal static unsafe class DenseKernels
{
    /// <summary>y[rows first..end, :] = bias + W·x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Multiply(SimdLevel level, float* w, int cols, float* x, float* y, float* bias, int batch, int first, int end)
    {
        switch (level)
        {
            case SimdLevel.Vector512: Vectorized<Lanes512, Vector512<float>>(w, cols, x, y, bias, batch, first, end); break;
            case SimdLevel.Vector256: Vectorized<Lanes256, Vector256<float>>(w, cols, x, y, bias, batch, first, end); break;
            default: Scalar(w, cols, x, y, bias, batch, first, end); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scalar(float* w, int cols, float* x, float* y, float* bias, int batch, int first, int end)
    {
        for (int r = first; r < end; r++)
        {
            float* wr = w + (long)r * cols;
            for (int b = 0; b < batch; b++)
            {
                float s = bias == null ? 0 : bias[r];
                for (int k = 0; k < cols; k++) s += wr[k] * x[(long)k * batch + b];
                y[(long)r * batch + b] = s;
            }
        }
    }

    /// <summary>
    /// y[r, 0..count) = bias[r] + Σ_k w[r, k]·x[rows.Offset(k) + 0..count) for rows [first, end), y's rows
    /// <paramref name="ldy"/> apart: a direct convolution's shifted product (<see cref="ShiftedRows"/>, a tap's operand
    /// row is the padded input shifted by the tap's offset), by the kernel of <see cref="Multiply"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void MultiplyShifted(SimdLevel level, float* w, int cols, int* offsets, float* x, float* y, long ldy, float* bias, int count, int first, int end)
    {
        if (level == SimdLevel.Vector512 && count < Vector512<float>.Count) level = SimdLevel.Vector256;
        var rows = new ShiftedRows(offsets);
        switch (level)
        {
            case SimdLevel.Vector512 when count >= Vector512<float>.Count: FourRows<Lanes512, Vector512<float>, ShiftedRows>(w, cols, x, rows, y, ldy, bias, count, first, end); break;
            case SimdLevel.Vector256 when count >= Vector256<float>.Count: FourRows<Lanes256, Vector256<float>, ShiftedRows>(w, cols, x, rows, y, ldy, bias, count, first, end); break;
            default:
                for (int b = 0; b < count; b++) Columns<Lanes1, float, ShiftedRows>(w, cols, x, rows, y, ldy, bias, b, first, end);
                break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Vectorized<TL, TVec>(float* w, int cols, float* x, float* y, float* bias, int batch, int first, int end)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        if (batch == 1) { Gemv<TL, TVec>(w, cols, x, y, bias, first, end); return; }
        if (batch < TL.Count) { Narrow<TL, TVec>(w, cols, x, y, bias, batch, first, end); return; }
        FourRows<TL, TVec, StridedRows>(w, cols, x, new StridedRows(batch), y, batch, bias, batch, first, end);
    }

    /// <summary>
    /// Four rows × two vectors of columns at a time: each loaded operand vector feeds four multiply-adds (needs
    /// <paramref name="count"/> ≥ one vector; the last columns and rows are done narrower).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FourRows<TL, TVec, TRows>(float* w, int cols, float* x, TRows rows, float* y, long ldy, float* bias, int count, int first, int end)
        where TL : struct, ILanes<TVec> where TVec : struct where TRows : struct, IColumnRows
    {
        int n = TL.Count;
        int vectorEnd = count - count % n;
        int r = first;
        for (; r + 4 <= end; r += 4)
        {
            float* w0 = w + (long)r * cols, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols;
            TVec c0 = TL.Broadcast(bias == null ? 0 : bias[r]), c1 = TL.Broadcast(bias == null ? 0 : bias[r + 1]);
            TVec c2 = TL.Broadcast(bias == null ? 0 : bias[r + 2]), c3 = TL.Broadcast(bias == null ? 0 : bias[r + 3]);
            float* y0 = y + r * ldy, y1 = y0 + ldy, y2 = y1 + ldy, y3 = y2 + ldy;
            int b = 0;
            for (; b + 2 * n <= count; b += 2 * n)
            {
                TVec a00 = c0, a01 = c0, a10 = c1, a11 = c1, a20 = c2, a21 = c2, a30 = c3, a31 = c3;
                for (int k = 0; k < cols; k++)
                {
                    float* xk = x + rows.Offset(k) + b;
                    TVec x0 = TL.Load(xk), x1 = TL.Load(xk + n);
                    TVec v0 = TL.Broadcast(w0[k]), v1 = TL.Broadcast(w1[k]), v2 = TL.Broadcast(w2[k]), v3 = TL.Broadcast(w3[k]);
                    a00 = TL.MulAdd(v0, x0, a00); a01 = TL.MulAdd(v0, x1, a01);
                    a10 = TL.MulAdd(v1, x0, a10); a11 = TL.MulAdd(v1, x1, a11);
                    a20 = TL.MulAdd(v2, x0, a20); a21 = TL.MulAdd(v2, x1, a21);
                    a30 = TL.MulAdd(v3, x0, a30); a31 = TL.MulAdd(v3, x1, a31);
                }
                TL.Store(y0 + b, a00); TL.Store(y0 + b + n, a01);
                TL.Store(y1 + b, a10); TL.Store(y1 + b + n, a11);
                TL.Store(y2 + b, a20); TL.Store(y2 + b + n, a21);
                TL.Store(y3 + b, a30); TL.Store(y3 + b + n, a31);
            }
            for (; b < vectorEnd; b += n) Columns<TL, TVec, TRows>(w, cols, x, rows, y, ldy, bias, b, r, r + 4);
            Tail<TL, TVec, TRows>(w, cols, x, rows, y, ldy, bias, count, vectorEnd, r, r + 4);
        }
        // The last one to three rows.
        for (int b = 0; b < vectorEnd; b += n) Columns<TL, TVec, TRows>(w, cols, x, rows, y, ldy, bias, b, r, end);
        Tail<TL, TVec, TRows>(w, cols, x, rows, y, ldy, bias, count, vectorEnd, r, end);
    }

    /// <summary>The columns [<paramref name="from"/>, count) narrower than a vector: four at a time in 128-bit vectors, then one at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tail<TL, TVec, TRows>(float* w, int cols, float* x, TRows rows, float* y, long ldy, float* bias, int count, int from, int first, int end)
        where TL : struct, ILanes<TVec> where TVec : struct where TRows : struct, IColumnRows
    {
        int b = from;
        if (TL.Count > Vector128<float>.Count && b + Vector128<float>.Count <= count)
        {
            Columns<Lanes128, Vector128<float>, TRows>(w, cols, x, rows, y, ldy, bias, b, first, end);
            b += Vector128<float>.Count;
        }
        for (; b < count; b++) Columns<Lanes1, float, TRows>(w, cols, x, rows, y, ldy, bias, b, first, end);
    }

    /// <summary>
    /// One vector of columns at <paramref name="b"/> for rows [first, end), four rows at once (four independent
    /// chains), each a chain of fused multiply-adds over k from the bias: the same operations in the same order as the
    /// wide paths, so a column gets the same bits wherever a block boundary puts it. <see cref="Lanes1"/> makes it the
    /// scalar kernel.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Columns<TL, TVec, TRows>(float* w, int cols, float* x, TRows rows, float* y, long ldy, float* bias, int b, int first, int end)
        where TL : struct, ILanes<TVec> where TVec : struct where TRows : struct, IColumnRows
    {
        int r = first;
        for (; r + 4 <= end; r += 4)
        {
            float* w0 = w + (long)r * cols, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols;
            TVec a0 = TL.Broadcast(bias == null ? 0 : bias[r]), a1 = TL.Broadcast(bias == null ? 0 : bias[r + 1]);
            TVec a2 = TL.Broadcast(bias == null ? 0 : bias[r + 2]), a3 = TL.Broadcast(bias == null ? 0 : bias[r + 3]);
            for (int k = 0; k < cols; k++)
            {
                TVec xk = TL.Load(x + rows.Offset(k) + b);
                a0 = TL.MulAdd(TL.Broadcast(w0[k]), xk, a0);
                a1 = TL.MulAdd(TL.Broadcast(w1[k]), xk, a1);
                a2 = TL.MulAdd(TL.Broadcast(w2[k]), xk, a2);
                a3 = TL.MulAdd(TL.Broadcast(w3[k]), xk, a3);
            }
            TL.Store(y + r * ldy + b, a0); TL.Store(y + (r + 1) * ldy + b, a1);
            TL.Store(y + (r + 2) * ldy + b, a2); TL.Store(y + (r + 3) * ldy + b, a3);
        }
        for (; r < end; r++)
        {
            float* wr = w + (long)r * cols;
            TVec a = TL.Broadcast(bias == null ? 0 : bias[r]);
            for (int k = 0; k < cols; k++) a = TL.MulAdd(TL.Broadcast(wr[k]), TL.Load(x + rows.Offset(k) + b), a);
            TL.Store(y + r * ldy + b, a);
        }
    }

    /// <summary>Batch 1: a dot product per row with four accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Gemv<TL, TVec>(float* w, int cols, float* x, float* y, float* bias, int first, int end)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        int n = TL.Count;
        for (int r = first; r < end; r++)
        {
            float* wr = w + (long)r * cols;
            TVec a0 = TL.Broadcast(0), a1 = a0, a2 = a0, a3 = a0;
            int k = 0;
            for (; k + 4 * n <= cols; k += 4 * n)
            {
                a0 = TL.MulAdd(TL.Load(wr + k), TL.Load(x + k), a0);
                a1 = TL.MulAdd(TL.Load(wr + k + n), TL.Load(x + k + n), a1);
                a2 = TL.MulAdd(TL.Load(wr + k + 2 * n), TL.Load(x + k + 2 * n), a2);
                a3 = TL.MulAdd(TL.Load(wr + k + 3 * n), TL.Load(x + k + 3 * n), a3);
            }
            for (; k + n <= cols; k += n) a0 = TL.MulAdd(TL.Load(wr + k), TL.Load(x + k), a0);
            float s = TL.Sum(TL.Add(TL.Add(a0, a1), TL.Add(a2, a3)));
            for (; k < cols; k++) s += wr[k] * x[k];
            y[r] = (bias == null ? 0 : bias[r]) + s;
        }
    }

    /// <summary>
    /// A batch narrower than a vector (small feature maps: 2×2 pixels at batch 1): x is transposed to [batch, cols] so
    /// that each output is a dot product along the inputs, vectorized like <see cref="Gemv{TL, TVec}"/>, four columns
    /// at a time sharing each load of the weights.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Narrow<TL, TVec>(float* w, int cols, float* x, float* y, float* bias, int batch, int first, int end)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        int n = TL.Count;
        float[] rented = System.Buffers.ArrayPool<float>.Shared.Rent(batch * cols);
        try
        {
            fixed (float* xt = rented)
            {
                for (int k = 0; k < cols; k++)
                    for (int b = 0; b < batch; b++) xt[(long)b * cols + k] = x[(long)k * batch + b];
                for (int r = first; r < end; r++)
                {
                    float* wr = w + (long)r * cols;
                    float start = bias == null ? 0 : bias[r];
                    int b = 0;
                    for (; b + 4 <= batch; b += 4)
                    {
                        float* x0 = xt + (long)b * cols, x1 = x0 + cols, x2 = x1 + cols, x3 = x2 + cols;
                        TVec a0 = TL.Broadcast(0), a1 = a0, a2 = a0, a3 = a0;
                        int k = 0;
                        for (; k + n <= cols; k += n)
                        {
                            TVec wk = TL.Load(wr + k);
                            a0 = TL.MulAdd(wk, TL.Load(x0 + k), a0);
                            a1 = TL.MulAdd(wk, TL.Load(x1 + k), a1);
                            a2 = TL.MulAdd(wk, TL.Load(x2 + k), a2);
                            a3 = TL.MulAdd(wk, TL.Load(x3 + k), a3);
                        }
                        float s0 = TL.Sum(a0), s1 = TL.Sum(a1), s2 = TL.Sum(a2), s3 = TL.Sum(a3);
                        for (; k < cols; k++) { s0 += wr[k] * x0[k]; s1 += wr[k] * x1[k]; s2 += wr[k] * x2[k]; s3 += wr[k] * x3[k]; }
                        float* yr = y + (long)r * batch + b;
                        yr[0] = start + s0; yr[1] = start + s1; yr[2] = start + s2; yr[3] = start + s3;
                    }
                    for (; b < batch; b++)
                    {
                        float* xb = xt + (long)b * cols;
                        TVec a = TL.Broadcast(0);
                        int k = 0;
                        for (; k + n <= cols; k += n) a = TL.MulAdd(TL.Load(wr + k), TL.Load(xb + k), a);
                        float sum = TL.Sum(a);
                        for (; k < cols; k++) sum += wr[k] * xb[k];
                        y[(long)r * batch + b] = start + sum;
                    }
                }
            }
        }
        finally
        {
            System.Buffers.ArrayPool<float>.Shared.Return(rented);
        }
    }
}
