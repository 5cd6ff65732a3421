using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Pruning.Sparse.Kernels;

/// <summary>
/// The dense shifted product of a direct convolution: y[r, 0..count) = bias[r] + Σ_t w[r, t]·x[offsets[t] + 0..count)
/// for rows [first, end), w row-major [rows, k], y's rows <c>ldy</c> apart. Four filters share each operand load: per tap
/// two vectors of the shifted input and four broadcast weights feed eight multiply-adds (the CSR kernel, one filter at
/// a time, loads a vector per multiply-add).
/// </summary>
internal static unsafe class DenseShiftedKernels
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(SimdLevel level, float* w, int k, int* offsets, float* x, float* y, long ldy, float* bias, int count, int first, int end)
    {
        if (level == SimdLevel.Vector512 && count < Vector512<float>.Count) level = SimdLevel.Vector256;
        switch (level)
        {
            case SimdLevel.Vector512: Vector<Lanes512, Vector512<float>>(w, k, offsets, x, y, ldy, bias, count, first, end); break;
            case SimdLevel.Vector256: Vector<Lanes256, Vector256<float>>(w, k, offsets, x, y, ldy, bias, count, first, end); break;
            default: Scalar(w, k, offsets, x, y, ldy, bias, 0, count, first, end); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Vector<TL, TVec>(float* w, int k, int* offsets, float* x, float* y, long ldy, float* bias, int count, int first, int end)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        int n = TL.Count, vectorEnd = count - count % n;
        int r = first;
        for (; r + 4 <= end; r += 4)
        {
            float* w0 = w + (long)r * k, w1 = w0 + k, w2 = w1 + k, w3 = w2 + k;
            float* y0 = y + r * ldy, y1 = y0 + ldy, y2 = y1 + ldy, y3 = y2 + ldy;
            TVec b0 = TL.Broadcast(bias == null ? 0 : bias[r]), b1 = TL.Broadcast(bias == null ? 0 : bias[r + 1]);
            TVec b2 = TL.Broadcast(bias == null ? 0 : bias[r + 2]), b3 = TL.Broadcast(bias == null ? 0 : bias[r + 3]);
            int c = 0;
            for (; c + 2 * n <= vectorEnd; c += 2 * n)
            {
                TVec a00 = b0, a01 = b0, a10 = b1, a11 = b1, a20 = b2, a21 = b2, a30 = b3, a31 = b3;
                for (int t = 0; t < k; t++)
                {
                    float* xt = x + offsets[t] + c;
                    TVec x0 = TL.Load(xt), x1 = TL.Load(xt + n);
                    TVec v = TL.Broadcast(w0[t]);
                    a00 = TL.MulAdd(v, x0, a00); a01 = TL.MulAdd(v, x1, a01);
                    v = TL.Broadcast(w1[t]);
                    a10 = TL.MulAdd(v, x0, a10); a11 = TL.MulAdd(v, x1, a11);
                    v = TL.Broadcast(w2[t]);
                    a20 = TL.MulAdd(v, x0, a20); a21 = TL.MulAdd(v, x1, a21);
                    v = TL.Broadcast(w3[t]);
                    a30 = TL.MulAdd(v, x0, a30); a31 = TL.MulAdd(v, x1, a31);
                }
                TL.Store(y0 + c, a00); TL.Store(y0 + c + n, a01);
                TL.Store(y1 + c, a10); TL.Store(y1 + c + n, a11);
                TL.Store(y2 + c, a20); TL.Store(y2 + c + n, a21);
                TL.Store(y3 + c, a30); TL.Store(y3 + c + n, a31);
            }
            for (; c < vectorEnd; c += n)
            {
                TVec a0 = b0, a1 = b1, a2 = b2, a3 = b3;
                for (int t = 0; t < k; t++)
                {
                    TVec x0 = TL.Load(x + offsets[t] + c);
                    a0 = TL.MulAdd(TL.Broadcast(w0[t]), x0, a0);
                    a1 = TL.MulAdd(TL.Broadcast(w1[t]), x0, a1);
                    a2 = TL.MulAdd(TL.Broadcast(w2[t]), x0, a2);
                    a3 = TL.MulAdd(TL.Broadcast(w3[t]), x0, a3);
                }
                TL.Store(y0 + c, a0); TL.Store(y1 + c, a1); TL.Store(y2 + c, a2); TL.Store(y3 + c, a3);
            }
            Scalar(w, k, offsets, x, y, ldy, bias, vectorEnd, count, r, r + 4);
        }
        // The last rows, one at a time.
        for (; r < end; r++)
        {
            float* wr = w + (long)r * k, yr = y + r * ldy;
            TVec b = TL.Broadcast(bias == null ? 0 : bias[r]);
            for (int c = 0; c < vectorEnd; c += n)
            {
                TVec a = b;
                for (int t = 0; t < k; t++) a = TL.MulAdd(TL.Broadcast(wr[t]), TL.Load(x + offsets[t] + c), a);
                TL.Store(yr + c, a);
            }
            Scalar(w, k, offsets, x, y, ldy, bias, vectorEnd, count, r, r + 1);
        }
    }

    /// <summary>Columns [<paramref name="c0"/>, <paramref name="count"/>) of rows [first, end), one value at a time: the reference the vector paths are tested against.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scalar(float* w, int k, int* offsets, float* x, float* y, long ldy, float* bias, int c0, int count, int first, int end)
    {
        for (int r = first; r < end; r++)
        {
            float* wr = w + (long)r * k, yr = y + r * ldy;
            for (int c = c0; c < count; c++)
            {
                float a = bias == null ? 0 : bias[r];
                for (int t = 0; t < k; t++) a = MathF.FusedMultiplyAdd(wr[t], x[offsets[t] + c], a);
                yr[c] = a;
            }
        }
    }
}
