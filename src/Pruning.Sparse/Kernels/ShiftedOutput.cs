using System.Runtime.CompilerServices;
namespace Pruning.Sparse.Kernels;

/// <summary>
/// Where a direct convolution's "wide" product goes: the product is computed with the padded row pitch (each output
/// row followed by kw−1 columns of garbage, samples a padded plane apart), one column block at a time into a small
/// per-thread tile (or, when it is narrow, into one wide layout), and this copies the block's valid positions straight into the compact [out, N, Ho, Wo] output
/// while the tile is in cache. The wide output is never written to memory whole.
/// </summary>
internal readonly unsafe struct ShiftedOutput(float* output, int batch, int plane, int paddedWidth, int height, int width)
{
    /// <summary>
    /// Copies the valid positions among wide columns [<paramref name="c0"/>, <paramref name="c0"/> + <paramref name="count"/>)
    /// of rows [<paramref name="first"/>, <paramref name="end"/>) from <paramref name="tile"/> (column c0 of row r at
    /// tile + (r − first)·pitch) to the output.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Store(float* tile, long pitch, int c0, int count, int first, int end)
    {
        int stop = c0 + count;
        // The first output row (n, oy) whose span [n·plane + oy·wp, + wo) may reach into the block.
        int n = c0 / plane, oy = (c0 - n * plane) / paddedWidth;
        for (; n < batch; n++, oy = 0)
            for (; oy < height; oy++)
            {
                int start = n * plane + oy * paddedWidth;
                if (start >= stop) return;
                int from = Math.Max(start, c0), to = Math.Min(start + width, stop);
                if (from >= to) continue;
                int length = to - from, ox = from - start;
                for (int r = first; r < end; r++)
                    new ReadOnlySpan<float>(tile + (r - first) * pitch + (from - c0), length)
                        .CopyTo(new Span<float>(output + (((long)r * batch + n) * height + oy) * width + ox, length));
            }
    }
}
