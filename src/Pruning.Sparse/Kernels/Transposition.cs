using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Pruning.Sparse.Kernels;

/// <summary>Matrix transposes for the layout changes at a model's edges: 8×8 AVX blocks where the CPU has AVX, scalar tiles otherwise.</summary>
internal static class Transposition
{
    private const int Tile = 16;

    /// <summary>
    /// dst[c·dstPitch + r] = src[r·srcPitch + c] for r &lt; <paramref name="rows"/>, c &lt; <paramref name="cols"/>: a
    /// [rows, cols] block (row pitch <paramref name="srcPitch"/>) written transposed (row pitch <paramref name="dstPitch"/>).
    /// </summary>
    public static void Transpose(ReadOnlySpan<float> source, int rows, int cols, long srcPitch, Span<float> destination, long dstPitch) =>
        Transpose(source, rows, cols, srcPitch, destination, dstPitch, Avx.IsSupported);

    /// <summary><see cref="Transpose(ReadOnlySpan{float}, int, int, long, Span{float}, long)"/> on a chosen path (tests run both).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void Transpose(ReadOnlySpan<float> source, int rows, int cols, long srcPitch, Span<float> destination, long dstPitch, bool vector)
    {
        if (rows == 0 || cols == 0) return;
        if ((rows - 1) * srcPitch + cols > source.Length || (cols - 1) * dstPitch + rows > destination.Length)
            throw new ArgumentException("Transpose buffers are too small.");
        if (cols == 1 && srcPitch == 1 && rows <= source.Length)
        {
            source[..rows].CopyTo(destination);   // a column vector is already its own transpose (a step at batch 1)
            return;
        }
        fixed (float* src = source)
        fixed (float* dst = destination)
        {
            int r8 = 0, c8 = 0;
            if (vector && Avx.IsSupported)
            {
                r8 = rows / 8 * 8;
                c8 = cols / 8 * 8;
                for (int r = 0; r < r8; r += 8)
                    for (int c = 0; c < c8; c += 8)
                        Block8(src + r * srcPitch + c, srcPitch, dst + c * dstPitch + r, dstPitch);
            }
            // What the 8×8 blocks left: the last rows (all columns) and the last columns (of the blocked rows).
            Scalar(src, r8, rows, 0, cols, srcPitch, dst, dstPitch);
            Scalar(src, 0, r8, c8, cols, srcPitch, dst, dstPitch);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Scalar(float* src, int rowStart, int rowEnd, int colStart, int colEnd, long srcPitch, float* dst, long dstPitch)
    {
        for (int r0 = rowStart; r0 < rowEnd; r0 += Tile)
            for (int c0 = colStart; c0 < colEnd; c0 += Tile)
            {
                int r1 = Math.Min(r0 + Tile, rowEnd), c1 = Math.Min(c0 + Tile, colEnd);
                for (int r = r0; r < r1; r++)
                {
                    float* row = src + r * srcPitch;
                    for (int c = c0; c < c1; c++) dst[c * dstPitch + r] = row[c];
                }
            }
    }

    /// <summary>One 8×8 block through registers: unpack pairs of rows, shuffle quadruples, swap 128-bit halves.</summary>
    private static unsafe void Block8(float* src, long srcPitch, float* dst, long dstPitch)
    {
        Vector256<float> r0 = Avx.LoadVector256(src), r1 = Avx.LoadVector256(src + srcPitch), r2 = Avx.LoadVector256(src + 2 * srcPitch),
            r3 = Avx.LoadVector256(src + 3 * srcPitch), r4 = Avx.LoadVector256(src + 4 * srcPitch), r5 = Avx.LoadVector256(src + 5 * srcPitch),
            r6 = Avx.LoadVector256(src + 6 * srcPitch), r7 = Avx.LoadVector256(src + 7 * srcPitch);
        Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1), t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3),
            t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5), t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
        Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44), u1 = Avx.Shuffle(t0, t2, 0xEE), u2 = Avx.Shuffle(t1, t3, 0x44), u3 = Avx.Shuffle(t1, t3, 0xEE),
            u4 = Avx.Shuffle(t4, t6, 0x44), u5 = Avx.Shuffle(t4, t6, 0xEE), u6 = Avx.Shuffle(t5, t7, 0x44), u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(dst, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(dst + dstPitch, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(dst + 2 * dstPitch, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(dst + 3 * dstPitch, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(dst + 4 * dstPitch, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(dst + 5 * dstPitch, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(dst + 6 * dstPitch, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(dst + 7 * dstPitch, Avx.Permute2x128(u3, u7, 0x31));
    }
}
