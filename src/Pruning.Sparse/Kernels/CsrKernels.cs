using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Pruning.Sparse.Kernels;

/// <summary>
/// CSR × dense kernels over a row range. Operands are feature-major: x is [cols, batch] and y is [rows, batch],
/// both row-major, so one batch's values for a feature are contiguous and the batched kernel vectorizes across
/// the batch. Column indices are <see cref="ushort"/> or <see cref="int"/>; the JIT compiles one copy per type.
/// </summary>
internal static unsafe class CsrKernels
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Column<TIndex>(TIndex* columns, int j) where TIndex : unmanaged =>
        typeof(TIndex) == typeof(ushort) ? ((ushort*)columns)[j] : ((int*)columns)[j];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Columns8<TIndex>(TIndex* columns, int j) where TIndex : unmanaged =>
        typeof(TIndex) == typeof(ushort)
            ? Avx2.ConvertToVector256Int32((ushort*)columns + j)
            : Avx.LoadVector256((int*)columns + j);

    /// <summary>y[r] = bias[r] + Σ values·x[column] for rows [first, end) (batch 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Spmv<TIndex, TValues>(SimdLevel level, int* rowPointers, TIndex* columns, TValues values, float* x, float* y, float* bias, int first, int end)
        where TIndex : unmanaged where TValues : struct, ICsrValues
    {
        if (level != SimdLevel.Scalar && SimdSupport.HasGather) SpmvGather(rowPointers, columns, values, x, y, bias, first, end);
        else SpmvScalar(rowPointers, columns, values, x, y, bias, first, end);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SpmvScalar<TIndex, TValues>(int* rowPointers, TIndex* columns, TValues values, float* x, float* y, float* bias, int first, int end)
        where TIndex : unmanaged where TValues : struct, ICsrValues
    {
        for (int r = first; r < end; r++)
        {
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int j = rowPointers[r], stop = rowPointers[r + 1];
            for (; j + 3 < stop; j += 4)
            {
                s0 += values.At(j) * x[Column(columns, j)];
                s1 += values.At(j + 1) * x[Column(columns, j + 1)];
                s2 += values.At(j + 2) * x[Column(columns, j + 2)];
                s3 += values.At(j + 3) * x[Column(columns, j + 3)];
            }
            for (; j < stop; j++) s0 += values.At(j) * x[Column(columns, j)];
            float sum = (s0 + s1) + (s2 + s3);
            y[r] = (bias == null ? 0 : bias[r]) + (values.Scaled ? values.Scale(r) * sum : sum);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SpmvGather<TIndex, TValues>(int* rowPointers, TIndex* columns, TValues values, float* x, float* y, float* bias, int first, int end)
        where TIndex : unmanaged where TValues : struct, ICsrValues
    {
        for (int r = first; r < end; r++)
        {
            int j = rowPointers[r], stop = rowPointers[r + 1];
            Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero;
            for (; j + 16 <= stop; j += 16)
            {
                a0 = Fma.MultiplyAdd(values.Load8(j), Avx2.GatherVector256(x, Columns8(columns, j), 4), a0);
                a1 = Fma.MultiplyAdd(values.Load8(j + 8), Avx2.GatherVector256(x, Columns8(columns, j + 8), 4), a1);
            }
            if (j + 8 <= stop)
            {
                a0 = Fma.MultiplyAdd(values.Load8(j), Avx2.GatherVector256(x, Columns8(columns, j), 4), a0);
                j += 8;
            }
            float s = Vector256.Sum(a0 + a1);
            for (; j < stop; j++) s += values.At(j) * x[Column(columns, j)];
            y[r] = (bias == null ? 0 : bias[r]) + (values.Scaled ? values.Scale(r) * s : s);
        }
    }

    /// <summary>y[r, :] = bias[r] + Σ values·x[column, :] for rows [first, end), batch ≥ 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Spmm<TIndex, TValues>(SimdLevel level, int* rowPointers, TIndex* columns, TValues values, float* x, float* y, float* bias, int batch, int first, int end)
        where TIndex : unmanaged where TValues : struct, ICsrValues =>
        Spmm(level, rowPointers, columns, values, x, new StridedRows(batch), y, batch, bias, batch, first, end);

    /// <summary>
    /// y[r, 0..width) = bias[r] + Σ values·x[offsets[column] + 0..width): the same product, but each column's operand
    /// row starts at its own offset into x, so rows may overlap. A stride-1 convolution is this product over the padded
    /// input, with one offset per (channel, ky, kx) (see <see cref="Layers.Conv2dLayer"/>), and needs no im2col.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SpmmShifted<TIndex, TValues>(SimdLevel level, int* rowPointers, TIndex* columns, TValues values, float* x, int* offsets, float* y, float* bias, int width, int first, int end)
        where TIndex : unmanaged where TValues : struct, ICsrValues =>
        Spmm(level, rowPointers, columns, values, x, new ShiftedRows(offsets), y, width, bias, width, first, end);

    /// <summary>
    /// y[r, 0..batch) = bias[r] + Σ values·x[rows.Offset(column) + 0..batch) for rows [first, end), y's rows
    /// <paramref name="ldy"/> apart: the general form, which also computes one block of columns of a wider product.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Spmm<TIndex, TValues, TRows>(SimdLevel level, int* rowPointers, TIndex* columns, TValues values, float* x, TRows rows, float* y, long ldy, float* bias, int batch, int first, int end)
        where TIndex : unmanaged where TValues : struct, ICsrValues where TRows : struct, IColumnRows
    {
        if (typeof(TValues) != typeof(Float32Values) && level != SimdLevel.Scalar && SimdSupport.HasGather)
        {
            SpmmDecoded(level, rowPointers, columns, values, x, rows, y, ldy, bias, batch, first, end);
            return;
        }
        // Fewer columns than a 512-bit vector but at least a 256-bit one: the narrower vectors, not the scalar tail.
        if (level == SimdLevel.Vector512 && batch < Vector512<float>.Count) level = SimdLevel.Vector256;
        switch (level)
        {
            case SimdLevel.Vector512: SpmmVector<Lanes512, Vector512<float>, TIndex, TValues, TRows>(rowPointers, columns, values, x, rows, y, ldy, bias, batch, first, end); break;
            case SimdLevel.Vector256: SpmmVector<Lanes256, Vector256<float>, TIndex, TValues, TRows>(rowPointers, columns, values, x, rows, y, ldy, bias, batch, first, end); break;
            default:
                for (int b = 0; b < batch; b++) NarrowRows<Lanes1, float, TIndex, TValues, TRows>(rowPointers, columns, values, x, rows, y, ldy, bias, b, first, end);
                break;
        }
    }

    /// <summary>Each thread's buffer for one decoded row (grown to the longest row it has met; at most the matrix's columns).</summary>
    [ThreadStatic]
    private static float[]? t_decodedRow;

    /// <summary>
    /// Compressed values in the batched kernel: each row's values are decoded once, eight at a time in registers (and
    /// scaled), into a small per-thread buffer, and the float32 kernel runs on it. Decoding per non-zero inside the
    /// kernel would repeat it for every batch chunk and cost a scalar decode per broadcast.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SpmmDecoded<TIndex, TValues, TRows>(SimdLevel level, int* rowPointers, TIndex* columns, TValues values, float* x, TRows rows, float* y, long ldy, float* bias, int batch, int first, int end)
        where TIndex : unmanaged where TValues : struct, ICsrValues where TRows : struct, IColumnRows
    {
        for (int r = first; r < end; r++)
        {
            int start = rowPointers[r], count = rowPointers[r + 1] - start;
            float[] buffer = t_decodedRow is { } b && b.Length >= count ? b : (t_decodedRow = new float[Math.Max(count, 256)]);
            fixed (float* decoded = buffer)
            {
                Vector256<float> scale = Vector256.Create(values.Scale(r));
                int k = 0;
                for (; k + 8 <= count; k += 8)
                {
                    Vector256<float> v = values.Load8(start + k);
                    (values.Scaled ? v * scale : v).Store(decoded + k);
                }
                for (; k < count; k++) decoded[k] = values.Scaled ? values.Scale(r) * values.At(start + k) : values.At(start + k);
                var plain = new Float32Values(decoded - start);
                if (level == SimdLevel.Vector512 && batch >= Vector512<float>.Count) SpmmVector<Lanes512, Vector512<float>, TIndex, Float32Values, TRows>(rowPointers, columns, plain, x, rows, y, ldy, bias, batch, r, r + 1);
                else SpmmVector<Lanes256, Vector256<float>, TIndex, Float32Values, TRows>(rowPointers, columns, plain, x, rows, y, ldy, bias, batch, r, r + 1);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SpmmVector<TL, TVec, TIndex, TValues, TRows>(int* rowPointers, TIndex* columns, TValues values, float* x, TRows rows, float* y, long ldy, float* bias, int batch, int first, int end)
        where TL : struct, ILanes<TVec> where TVec : struct where TIndex : unmanaged where TValues : struct, ICsrValues where TRows : struct, IColumnRows
    {
        int n = TL.Count;
        int vectorEnd = batch - batch % n, wideEnd = batch - batch % (4 * n);
        for (int r = first; r < end && wideEnd > 0; r++)
        {
            int start = rowPointers[r], stop = rowPointers[r + 1];
            // Unscaled values accumulate onto the bias; scaled ones from zero, then sum·scale + bias at the store.
            TVec b0 = Start<TL, TVec, TValues>(bias, r);
            float* yr = y + r * ldy;
            int b = 0;
            // Eight accumulators across the batch: each non-zero costs one broadcast and eight loads + FMAs.
            for (; b + 8 * n <= batch; b += 8 * n)
            {
                TVec a0 = b0, a1 = b0, a2 = b0, a3 = b0, a4 = b0, a5 = b0, a6 = b0, a7 = b0;
                for (int j = start; j < stop; j++)
                {
                    TVec w = TL.Broadcast(values.At(j));
                    float* xr = x + rows.Offset(Column(columns, j)) + b;
                    a0 = TL.MulAdd(w, TL.Load(xr), a0);
                    a1 = TL.MulAdd(w, TL.Load(xr + n), a1);
                    a2 = TL.MulAdd(w, TL.Load(xr + 2 * n), a2);
                    a3 = TL.MulAdd(w, TL.Load(xr + 3 * n), a3);
                    a4 = TL.MulAdd(w, TL.Load(xr + 4 * n), a4);
                    a5 = TL.MulAdd(w, TL.Load(xr + 5 * n), a5);
                    a6 = TL.MulAdd(w, TL.Load(xr + 6 * n), a6);
                    a7 = TL.MulAdd(w, TL.Load(xr + 7 * n), a7);
                }
                Finish<TL, TVec, TValues>(yr + b, a0, values, bias, r); Finish<TL, TVec, TValues>(yr + b + n, a1, values, bias, r);
                Finish<TL, TVec, TValues>(yr + b + 2 * n, a2, values, bias, r); Finish<TL, TVec, TValues>(yr + b + 3 * n, a3, values, bias, r);
                Finish<TL, TVec, TValues>(yr + b + 4 * n, a4, values, bias, r); Finish<TL, TVec, TValues>(yr + b + 5 * n, a5, values, bias, r);
                Finish<TL, TVec, TValues>(yr + b + 6 * n, a6, values, bias, r); Finish<TL, TVec, TValues>(yr + b + 7 * n, a7, values, bias, r);
            }
            for (; b + 4 * n <= batch; b += 4 * n)
            {
                TVec a0 = b0, a1 = b0, a2 = b0, a3 = b0;
                for (int j = start; j < stop; j++)
                {
                    TVec w = TL.Broadcast(values.At(j));
                    float* xr = x + rows.Offset(Column(columns, j)) + b;
                    a0 = TL.MulAdd(w, TL.Load(xr), a0);
                    a1 = TL.MulAdd(w, TL.Load(xr + n), a1);
                    a2 = TL.MulAdd(w, TL.Load(xr + 2 * n), a2);
                    a3 = TL.MulAdd(w, TL.Load(xr + 3 * n), a3);
                }
                Finish<TL, TVec, TValues>(yr + b, a0, values, bias, r); Finish<TL, TVec, TValues>(yr + b + n, a1, values, bias, r);
                Finish<TL, TVec, TValues>(yr + b + 2 * n, a2, values, bias, r); Finish<TL, TVec, TValues>(yr + b + 3 * n, a3, values, bias, r);
            }
        }
        // Fewer than four vectors left: one vector at a time, then four columns, then single ones, four rows at once.
        int c = wideEnd;
        for (; c < vectorEnd; c += n) NarrowRows<TL, TVec, TIndex, TValues, TRows>(rowPointers, columns, values, x, rows, y, ldy, bias, c, first, end);
        if (n > Vector128<float>.Count && c + Vector128<float>.Count <= batch)
        {
            NarrowRows<Lanes128, Vector128<float>, TIndex, TValues, TRows>(rowPointers, columns, values, x, rows, y, ldy, bias, c, first, end);
            c += Vector128<float>.Count;
        }
        for (; c < batch; c++) NarrowRows<Lanes1, float, TIndex, TValues, TRows>(rowPointers, columns, values, x, rows, y, ldy, bias, c, first, end);
    }

    /// <summary>
    /// One vector of columns starting at <paramref name="b"/>, for rows [first, end), four rows at once: each row's sum
    /// is its own chain of fused multiply-adds in the row's order (the order of every other path, so a column gets the
    /// same bits wherever a block boundary puts it), and four independent chains hide the multiply-add latency that
    /// one row alone would wait on. <see cref="Lanes1"/> makes it the scalar kernel.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void NarrowRows<TL, TVec, TIndex, TValues, TRows>(int* rowPointers, TIndex* columns, TValues values, float* x, TRows rows, float* y, long ldy, float* bias, int b, int first, int end)
        where TL : struct, ILanes<TVec> where TVec : struct where TIndex : unmanaged where TValues : struct, ICsrValues where TRows : struct, IColumnRows
    {
        float* xb = x + b;
        int r = first;
        for (; r + 4 <= end; r += 4)
        {
            int j0 = rowPointers[r], j1 = rowPointers[r + 1], j2 = rowPointers[r + 2], j3 = rowPointers[r + 3], stop = rowPointers[r + 4];
            int common = Math.Min(Math.Min(j1 - j0, j2 - j1), Math.Min(j3 - j2, stop - j3));
            TVec a0 = Start<TL, TVec, TValues>(bias, r), a1 = Start<TL, TVec, TValues>(bias, r + 1);
            TVec a2 = Start<TL, TVec, TValues>(bias, r + 2), a3 = Start<TL, TVec, TValues>(bias, r + 3);
            for (int k = 0; k < common; k++)
            {
                a0 = TL.MulAdd(TL.Broadcast(values.At(j0 + k)), TL.Load(xb + rows.Offset(Column(columns, j0 + k))), a0);
                a1 = TL.MulAdd(TL.Broadcast(values.At(j1 + k)), TL.Load(xb + rows.Offset(Column(columns, j1 + k))), a1);
                a2 = TL.MulAdd(TL.Broadcast(values.At(j2 + k)), TL.Load(xb + rows.Offset(Column(columns, j2 + k))), a2);
                a3 = TL.MulAdd(TL.Broadcast(values.At(j3 + k)), TL.Load(xb + rows.Offset(Column(columns, j3 + k))), a3);
            }
            a0 = Continue<TL, TVec, TIndex, TValues, TRows>(columns, values, xb, rows, j0 + common, j1, a0);
            a1 = Continue<TL, TVec, TIndex, TValues, TRows>(columns, values, xb, rows, j1 + common, j2, a1);
            a2 = Continue<TL, TVec, TIndex, TValues, TRows>(columns, values, xb, rows, j2 + common, j3, a2);
            a3 = Continue<TL, TVec, TIndex, TValues, TRows>(columns, values, xb, rows, j3 + common, stop, a3);
            Finish<TL, TVec, TValues>(y + r * ldy + b, a0, values, bias, r);
            Finish<TL, TVec, TValues>(y + (r + 1) * ldy + b, a1, values, bias, r + 1);
            Finish<TL, TVec, TValues>(y + (r + 2) * ldy + b, a2, values, bias, r + 2);
            Finish<TL, TVec, TValues>(y + (r + 3) * ldy + b, a3, values, bias, r + 3);
        }
        for (; r < end; r++)
            Finish<TL, TVec, TValues>(y + r * ldy + b,
                Continue<TL, TVec, TIndex, TValues, TRows>(columns, values, xb, rows, rowPointers[r], rowPointers[r + 1], Start<TL, TVec, TValues>(bias, r)), values, bias, r);
    }

    /// <summary>An accumulator's start: the bias for unscaled values, zero for scaled ones (the bias is added after the scale).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVec Start<TL, TVec, TValues>(float* bias, int r) where TL : struct, ILanes<TVec> where TVec : struct where TValues : struct, ICsrValues =>
        TL.Broadcast(default(TValues).Scaled || bias == null ? 0 : bias[r]);

    /// <summary>Adds non-zeros [j, stop) of a row to its accumulator, in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVec Continue<TL, TVec, TIndex, TValues, TRows>(TIndex* columns, TValues values, float* xb, TRows rows, int j, int stop, TVec a)
        where TL : struct, ILanes<TVec> where TVec : struct where TIndex : unmanaged where TValues : struct, ICsrValues where TRows : struct, IColumnRows
    {
        for (; j < stop; j++) a = TL.MulAdd(TL.Broadcast(values.At(j)), TL.Load(xb + rows.Offset(Column(columns, j))), a);
        return a;
    }

    /// <summary>Stores row r's accumulator: as it is (it started at the bias, <see cref="Start"/>), or scaled and biased.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Finish<TL, TVec, TValues>(float* destination, TVec sum, TValues values, float* bias, int r)
        where TL : struct, ILanes<TVec> where TVec : struct where TValues : struct, ICsrValues =>
        TL.Store(destination, values.Scaled ? TL.MulAdd(sum, TL.Broadcast(values.Scale(r)), TL.Broadcast(bias == null ? 0 : bias[r])) : sum);
}

/// <summary>Where the batched kernel finds the operand row of a CSR column. A struct, so each kind is compiled inline.</summary>
internal interface IColumnRows
{
    long Offset(int column);
}

/// <summary>Row c of a row-major [cols, stride] operand.</summary>
internal readonly struct StridedRows(long stride) : IColumnRows
{
    private readonly long _stride = stride;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public long Offset(int column) => column * _stride;
}

/// <summary>An offset per column, from a table.</summary>
internal readonly unsafe struct ShiftedRows(int* offsets) : IColumnRows
{
    private readonly int* _offsets = offsets;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public long Offset(int column) => _offsets[column];
}
