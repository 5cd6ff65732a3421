using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Pruning.Sparse.Layers;

/// <summary>Pooling kinds.</summary>
public enum PoolKind : byte
{
    /// <summary>Maximum over the window (padding never wins).</summary>
    Max = 1,
    /// <summary>Mean over the window.</summary>
    Average = 2,
}

/// <summary>2-D max or average pooling (floor mode, like PyTorch's default ceil_mode = false).</summary>
public sealed class Pool2dLayer : SparseLayer
{
    /// <summary>Creates the layer. <paramref name="stride"/> defaults to the kernel; <paramref name="countIncludePad"/> is PyTorch's AvgPool2d flag.</summary>
    public Pool2dLayer(PoolKind kind, (int H, int W) kernel, (int H, int W) stride = default, (int H, int W) padding = default, bool countIncludePad = true, bool ceilMode = false)
    {
        if (!Enum.IsDefined(kind)) throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown pooling kind.");
        stride = stride == default ? kernel : stride;
        CheckPair(kernel, 1, nameof(kernel), "Kernel extents");
        CheckPair(stride, 1, nameof(stride), "Strides");
        if (padding.H < 0 || padding.W < 0 || 2 * padding.H > kernel.H || 2 * padding.W > kernel.W)
            throw new ArgumentOutOfRangeException(nameof(padding), padding, "Padding must be in [0, kernel / 2] (as in PyTorch).");
        Kind = kind;
        Kernel = kernel;
        Stride = stride;
        Padding = padding;
        CountIncludePad = countIncludePad;
        CeilMode = ceilMode;
    }

    /// <summary>Max or average.</summary>
    public PoolKind Kind { get; }

    /// <summary>Window height and width.</summary>
    public (int H, int W) Kernel { get; }

    /// <summary>Stride.</summary>
    public (int H, int W) Stride { get; }

    /// <summary>Implicit padding on each side.</summary>
    public (int H, int W) Padding { get; }

    /// <summary>Average pooling divides by the whole window, padding included (PyTorch's default), instead of by the inputs it covers.</summary>
    public bool CountIncludePad { get; }

    /// <summary>
    /// PyTorch's ceil_mode: the output extent rounds up, so a last, partial window is kept as long as it starts inside
    /// the input or the left padding; it is clipped to the input (an average divides by the part inside the padded input).
    /// </summary>
    public bool CeilMode { get; }

    /// <inheritdoc />
    public override string Describe() => $"{Kind}Pool2d {Kernel.H}×{Kernel.W}/{Stride.H}{(CeilMode ? " ceil" : "")}";

    /// <inheritdoc />
    public override FeatureShape OutputShape(FeatureShape input)
    {
        long h = Extent(input.Height, Kernel.H, Stride.H, Padding.H), w = Extent(input.Width, Kernel.W, Stride.W, Padding.W);
        if (input.Height + 2L * Padding.H < Kernel.H || input.Width + 2L * Padding.W < Kernel.W)
            throw new ArgumentException($"{Describe()} does not fit an input of {input}.", nameof(input));
        return new FeatureShape(input.Channels, (int)h, (int)w);
    }

    /// <summary>Output extent along one axis, as PyTorch computes it (floor, or ceil dropping a window that would start in the right padding).</summary>
    private long Extent(int size, int kernel, int stride, int padding)
    {
        long span = (long)size + 2 * padding - kernel;
        if (span < 0) return 0;
        long extent = (CeilMode ? (span + stride - 1) / stride : span / stride) + 1;
        if (CeilMode && (extent - 1) * stride >= size + padding) extent--;
        return extent;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal override unsafe void Forward(ReadOnlySpan<float> input, FeatureShape shape, Span<float> output, int batch, Span<float> scratch, int threads)
    {
        FeatureShape outShape = OutputShape(shape);
        int h = shape.Height, w = shape.Width, ho = outShape.Height, wo = outShape.Width;
        int planes = shape.Channels * batch;
        if (input.Length < (long)planes * h * w || output.Length < (long)planes * ho * wo)
            throw new ArgumentException("The buffers are smaller than the pooled shapes.", nameof(input));
        // Planes are independent: they are split across the kernel threads (each output costs about a kernel's area of reads).
        int[] bounds = Kernels.Parallelism.Even(planes, threads, (long)planes * ho * wo * Kernel.H * Kernel.W);
        fixed (float* px = input, py = output)
        {
            nint src = (nint)px, dst = (nint)py;
            Kernels.Parallelism.Run(bounds, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (first, end) =>
            {
                // Max pooling's row of window maxima; average pooling needs none.
                Span<float> rowMax = Kind != PoolKind.Max ? default : w <= 4096 ? stackalloc float[w] : new float[w];
                fixed (float* row = rowMax)
                    for (int p = first; p < end; p++)
                    {
                        float* from = (float*)src + (long)p * h * w, to = (float*)dst + (long)p * ho * wo;
                        if (Kind == PoolKind.Max) MaxPlane(from, to, h, w, ho, wo, row);
                        else AveragePlane(from, to, h, w, ho, wo);
                    }
            });
        }
    }

    /// <summary>
    /// Max pooling of one plane in two passes per output row: the window's input rows are reduced element-wise into
    /// <paramref name="row"/> (vectorized, NaN-propagating like <see cref="MathF.Max(float, float)"/>), then each output takes the
    /// maximum of its columns of that row. A NaN anywhere in a window gives NaN, as in PyTorch.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private unsafe void MaxPlane(float* src, float* dst, int h, int w, int ho, int wo, float* row)
    {
        for (int oy = 0; oy < ho; oy++)
        {
            int y0 = oy * Stride.H - Padding.H, y1 = Math.Min(y0 + Kernel.H, h);
            y0 = Math.Max(y0, 0);
            new ReadOnlySpan<float>(src + (long)y0 * w, w).CopyTo(new Span<float>(row, w));
            for (int iy = y0 + 1; iy < y1; iy++)
            {
                float* line = src + (long)iy * w;
                int i = 0;
                for (; i + Vector256<float>.Count <= w; i += Vector256<float>.Count)
                    Vector256.Max(Vector256.Load(row + i), Vector256.Load(line + i)).Store(row + i);
                for (; i < w; i++) row[i] = MathF.Max(row[i], line[i]);
            }
            float* o = dst + (long)oy * wo;
            // Windows of 2 or 3 columns at stride 2 (2×2/2, resnet's 3×3/2), inside the row: four outputs from the even
            // and odd columns of eight (ten) inputs.
            bool pairs = Stride.W == 2 && Kernel.W is 2 or 3 && Sse.IsSupported;
            int reach = Kernel.W == 3 ? 10 : 8;
            for (int ox = 0; ox < wo; ox++)
            {
                int x0 = ox * Stride.W - Padding.W, x1 = Math.Min(x0 + Kernel.W, w);
                if (pairs && x0 >= 0 && ox + 4 <= wo && x0 + reach <= w)
                {
                    float* r = row + x0;
                    Vector128<float> a = Vector128.Load(r), b = Vector128.Load(r + 4);
                    Vector128<float> four = Vector128.Max(Sse.Shuffle(a, b, 0b10_00_10_00), Sse.Shuffle(a, b, 0b11_01_11_01));
                    if (Kernel.W == 3) four = Vector128.Max(four, Sse.Shuffle(Vector128.Load(r + 2), Vector128.Load(r + 6), 0b10_00_10_00));
                    four.Store(o + ox);
                    ox += 3;
                    continue;
                }
                x0 = Math.Max(x0, 0);
                float m = row[x0];
                for (int ix = x0 + 1; ix < x1; ix++)
                {
                    float v = row[ix];
                    if (v > m || float.IsNaN(v)) m = v;
                }
                o[ox] = m;
            }
        }
    }

    /// <summary>Average pooling of one plane, dividing by the window's size with or without padding (<see cref="CountIncludePad"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private unsafe void AveragePlane(float* src, float* dst, int h, int w, int ho, int wo)
    {
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++)
            {
                int y0 = oy * Stride.H - Padding.H, x0 = ox * Stride.W - Padding.W;
                int y1 = Math.Min(y0 + Kernel.H, h), x1 = Math.Min(x0 + Kernel.W, w);
                int padded = (Math.Min(y0 + Kernel.H, h + Padding.H) - y0) * (Math.Min(x0 + Kernel.W, w + Padding.W) - x0);
                y0 = Math.Max(y0, 0);
                x0 = Math.Max(x0, 0);
                float acc = 0f;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) acc += src[iy * w + ix];
                dst[oy * wo + ox] = acc / (CountIncludePad ? padded : (y1 - y0) * (x1 - x0));
            }
    }
}
