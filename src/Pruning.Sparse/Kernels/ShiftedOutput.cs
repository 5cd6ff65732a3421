using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Pruning.Sparse.Kernels;

/// <summary>
/// Where a direct convolution's "wide" product goes: the product is computed with the padded row pitch (each output
/// row followed by kw−1 columns of garbage, samples a padded plane apart), one column block at a time into a small
/// per-thread tile (or, when it is narrow, into one wide layout), and this copies the block's valid positions straight
/// into the compact [out, N, Ho, Wo] output while the tile is in cache, applying the layer's fused activation
/// (<see cref="Epilogue"/>) on the way. The wide output is never written to memory whole.
/// </summary>
internal readonly unsafe struct ShiftedOutput(float* output, int batch, int plane, int paddedWidth, int height, int width, Epilogue epilogue, bool vector)
{
    /// <summary>
    /// Column blocks must start at a multiple of this many columns within each sample: two padded rows when the store
    /// pools 2×2 windows (both rows of a window in one block), else 1.
    /// </summary>
    public int Align => epilogue.PoolsMax2x2 ? 2 * paddedWidth : 1;

    /// <summary>
    /// Copies the valid positions among wide columns [<paramref name="c0"/>, <paramref name="c0"/> + <paramref name="count"/>)
    /// of rows [<paramref name="first"/>, <paramref name="end"/>) from <paramref name="tile"/> (column c0 of row r at
    /// tile + (r − first)·pitch) to the output.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Store(float* tile, long pitch, int c0, int count, int first, int end)
    {
        if (epilogue.PoolsMax2x2)
        {
            StorePooled(tile, pitch, c0, count, first, end);
            return;
        }
        int stop = c0 + count;
        // The first output row (n, oy) whose span [n·plane + oy·wp, + wo) may reach into the block.
        int n0 = c0 / plane, oy0 = (c0 - n0 * plane) / paddedWidth;
        long channel = (long)batch * height * width;
        for (int r = first; r < end; r++)
        {
            float* source = tile + (r - first) * pitch - c0, destination = output + r * channel;
            for (int n = n0, oy = oy0; n < batch; n++, oy = 0)
                for (; oy < height; oy++)
                {
                    int start = n * plane + oy * paddedWidth;
                    if (start >= stop) goto nextRow;
                    int from = Math.Max(start, c0), to = Math.Min(start + width, stop);
                    if (from < to) Copy(source + from, destination + ((long)n * height + oy) * width + (from - start), to - from);
                }
            nextRow:;
        }
    }

    /// <summary>
    /// <see cref="Store"/> with 2×2 max pooling at stride 2 (floor mode): each pair of output rows (2·py, 2·py + 1) of a
    /// sample, both inside the block (<see cref="Align"/>), becomes pooled row py of [out, N, Ho / 2, Wo / 2], four
    /// outputs at a time from the even and odd columns of eight. The activation goes on the maxima (ReLU and ReLU6 are
    /// monotone, so it is the same as on the inputs); NaN propagates, as in PyTorch.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void StorePooled(float* tile, long pitch, int c0, int count, int first, int end)
    {
        int stop = c0 + count, ph = height / 2, pw = width / 2;
        int n0 = c0 / plane, oy0 = (c0 - n0 * plane) / paddedWidth;
        if ((c0 - n0 * plane) % (2 * paddedWidth) != 0)
            throw new InvalidOperationException($"A pooled block starts at column {c0}, not at a pair of padded rows of {paddedWidth}.");
        long channel = (long)batch * ph * pw;
        for (int r = first; r < end; r++)
        {
            float* source = tile + (r - first) * pitch - c0, destination = output + r * channel;
            for (int n = n0, oy = oy0; n < batch; n++, oy = 0)
                for (; oy + 1 < height; oy += 2)
                {
                    int start = n * plane + oy * paddedWidth;
                    if (start >= stop) goto nextRow;
                    Pool(source + start, source + start + paddedWidth, destination + ((long)n * ph + oy / 2) * pw, pw);
                }
            nextRow:;
        }
    }

    /// <summary>pooled[i] = epilogue(max of a[2i], a[2i + 1], b[2i], b[2i + 1]) for i below <paramref name="count"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Pool(float* a, float* b, float* pooled, int count)
    {
        int i = 0;
        if (vector && Sse.IsSupported && count >= 4)
        {
            for (; ; i += 4)
            {
                if (i + 4 > count) i = count - 4;   // the last four overlap the ones before, reading only inside the rows
                Vector128<float> lo = Vector128.Max(Vector128.Load(a + 2 * i), Vector128.Load(b + 2 * i));
                Vector128<float> hi = Vector128.Max(Vector128.Load(a + 2 * i + 4), Vector128.Load(b + 2 * i + 4));
                epilogue.Apply(Vector128.Max(Sse.Shuffle(lo, hi, 0b10_00_10_00), Sse.Shuffle(lo, hi, 0b11_01_11_01))).Store(pooled + i);
                if (i + 4 >= count) return;
            }
        }
        for (; i < count; i++)
        {
            float m = Max(Max(a[2 * i], a[2 * i + 1]), Max(b[2 * i], b[2 * i + 1]));
            pooled[i] = epilogue.Apply(m);
        }
    }

    /// <summary>The larger of two values, NaN if either is.</summary>
    private static float Max(float x, float y) => x > y || float.IsNaN(x) ? x : y;

    /// <summary>
    /// <paramref name="length"/> values through the epilogue, in 8-wide vectors, the last one overlapping the one before
    /// it (it reads the source again, so the epilogue never sees its own output) rather than a scalar tail.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Copy(float* source, float* destination, int length)
    {
        if (vector && length >= 8)
        {
            int i = 0;
            for (; i + 8 <= length; i += 8) epilogue.Apply(Vector256.Load(source + i)).Store(destination + i);
            if (i < length) epilogue.Apply(Vector256.Load(source + length - 8)).Store(destination + length - 8);
            return;
        }
        if (vector && length >= 4)
        {
            epilogue.Apply(Vector128.Load(source)).Store(destination);
            epilogue.Apply(Vector128.Load(source + length - 4)).Store(destination + length - 4);
            return;
        }
        for (int i = 0; i < length; i++) destination[i] = epilogue.Apply(source[i]);
    }
}
