using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Pruning.Sparse.Kernels;

/// <summary>
/// The right-hand operand x[K, N] of a product y[M, N] = W·x, read a block at a time. Either a matrix in memory
/// (<see cref="StoredColumns"/>) or one computed as it is read (<see cref="Im2ColColumns"/>: a convolution's im2col
/// matrix, never materialized whole). The kernels copy the blocks they need into their own cache-sized buffers, so a
/// computed operand costs what packing a stored one costs.
/// </summary>
internal abstract unsafe class ColumnSource(int rows, int columns)
{
    /// <summary>K: the operand's rows (the weight's columns).</summary>
    public int Rows { get; } = rows;

    /// <summary>N: the operand's columns (batch × output positions).</summary>
    public int Columns { get; } = columns;

    /// <summary>The operand itself, rows <see cref="Columns"/> apart, when it is stored; null when it is computed.</summary>
    public virtual float* Stored => null;

    /// <summary>Writes rows [k0, k0 + depth) × columns [c0, c0 + count) to <paramref name="destination"/>, rows <paramref name="pitch"/> apart.</summary>
    public abstract void Copy(int k0, int depth, int c0, int count, float* destination, int pitch);

    /// <summary>
    /// The whole operand into <paramref name="destination"/> ([K, N]), rows split across the kernel threads; returns
    /// the stored copy.
    /// </summary>
    public StoredColumns Materialize(float* destination, int threads)
    {
        nint target = (nint)destination;
        int n = Columns;
        Parallelism.Run(Parallelism.Even(Rows, threads, (long)Rows * Columns / 4), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (first, end) =>
            Copy(first, end - first, 0, n, (float*)target + (long)first * n, n));
        return new StoredColumns(destination, Rows, Columns);
    }
}

/// <summary>A row-major [K, N] matrix in memory.</summary>
internal sealed unsafe class StoredColumns(float* x, int rows, int columns) : ColumnSource(rows, columns)
{
    public override float* Stored => x;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Copy(int k0, int depth, int c0, int count, float* destination, int pitch)
    {
        for (int k = 0; k < depth; k++)
            Buffer.MemoryCopy(x + (long)(k0 + k) * Columns + c0, destination + (long)k * pitch, count * sizeof(float), count * sizeof(float));
    }
}

/// <summary>
/// The im2col matrix of a 2-D convolution over a [C, N, H, W] input, computed on demand: row (c, ky, kx), column
/// (n, oy, ox) holds input (c, n, oy·sh − ph + ky·dh, ox·sw − pw + kx·dw), zero where that falls into the padding.
/// </summary>
internal sealed unsafe class Im2ColColumns : ColumnSource
{
    private readonly float* _input;
    private readonly SimdLevel _level;
    private readonly int _batch, _h, _w, _ho, _wo, _kh, _kw;
    private readonly (int H, int W) _stride, _padding, _dilation;

    public Im2ColColumns(float* input, int channels, int batch, (int H, int W) inputSize, (int H, int W) outputSize, (int H, int W) kernel, (int H, int W) stride, (int H, int W) padding, (int H, int W) dilation, SimdLevel level)
        : base(checked(channels * kernel.H * kernel.W), checked(batch * outputSize.H * outputSize.W))
    {
        _input = input;
        _level = level;
        _batch = batch;
        (_h, _w) = inputSize;
        (_ho, _wo) = outputSize;
        (_kh, _kw) = kernel;
        _stride = stride;
        _padding = padding;
        _dilation = dilation;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Copy(int k0, int depth, int c0, int count, float* destination, int pitch)
    {
        int plane = _ho * _wo, taps = _kh * _kw, sw = _stride.W;
        for (int k = k0; k < k0 + depth; k++, destination += pitch)
        {
            int c = k / taps, ky = k % taps / _kw, kx = k % _kw;
            int shift = kx * _dilation.W - _padding.W;   // ix = ox·sw + shift
            // Output columns whose input column is inside [0, w): lo ≤ ox < hi.
            int lo = shift >= 0 ? 0 : (-shift + sw - 1) / sw;
            int hi = _w - 1 - shift < 0 ? 0 : Math.Min(_wo, (_w - 1 - shift) / sw + 1);
            if (hi < lo) hi = lo;
            int n = c0 / plane, oy = c0 % plane / _wo, ox = c0 % _wo;
            float* d = destination;
            for (int left = count; left > 0;)
            {
                int run = Math.Min(_wo - ox, left);
                int iy = oy * _stride.H - _padding.H + ky * _dilation.H;
                if ((uint)iy >= (uint)_h) new Span<float>(d, run).Clear();
                else
                {
                    float* line = _input + (((long)c * _batch + n) * _h + iy) * _w + shift;
                    int a = Math.Clamp(lo, ox, ox + run), b = Math.Clamp(hi, a, ox + run);
                    if (a > ox) new Span<float>(d, a - ox).Clear();
                    if (sw == 1) new ReadOnlySpan<float>(line + a, b - a).CopyTo(new Span<float>(d + (a - ox), b - a));
                    else if (sw == 2) EveryOther(line, a, b, _w - shift, d - ox);
                    else for (int i = a; i < b; i++) d[i - ox] = line[i * sw];
                    if (b < ox + run) new Span<float>(d + (b - ox), ox + run - b).Clear();
                }
                d += run;
                left -= run;
                ox = 0;
                if (++oy == _ho) { oy = 0; n++; }
            }
        }
    }

    /// <summary>
    /// d[i] = line[2i] for i in [a, b) (stride-2 windows: the stems and downsampling layers). Vectors of outputs are
    /// taken from two loads by one permute; a vector runs only while its loads stay inside the input line, which ends
    /// before line[<paramref name="limit"/>].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void EveryOther(float* line, int a, int b, int limit, float* d)
    {
        int i = a;
        if (_level == SimdLevel.Vector512 && Avx512F.IsSupported)
        {
            Vector512<int> even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            for (; i + 16 <= b && 2 * i + 32 <= limit; i += 16)
                Avx512F.PermuteVar16x32x2(Vector512.Load(line + 2 * i), even, Vector512.Load(line + 2 * i + 16)).Store(d + i);
        }
        else if (_level != SimdLevel.Scalar && Avx2.IsSupported)
        {
            for (; i + 8 <= b && 2 * i + 16 <= limit; i += 8)
            {
                // [0 2 | 8 10 | 4 6 | 12 14] per 128-bit lane, then the 64-bit pairs put in order.
                Vector256<float> pairs = Avx.Shuffle(Vector256.Load(line + 2 * i), Vector256.Load(line + 2 * i + 8), 0b10_00_10_00);
                Avx2.Permute4x64(pairs.AsDouble(), 0b11_01_10_00).AsSingle().Store(d + i);
            }
        }
        for (; i < b; i++) d[i] = line[2 * i];
    }
}
