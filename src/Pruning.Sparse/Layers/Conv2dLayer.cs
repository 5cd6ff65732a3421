using Pruning.Sparse.Matrices;

namespace Pruning.Sparse.Layers;

/// <summary>
/// 2-D convolution (groups = 1) as one matrix product: W [out channels, in channels·kh·kw] times the im2col columns
/// [in channels·kh·kw, N·out height·out width]. A 1×1 convolution with stride 1 and no padding skips im2col.
/// </summary>
public sealed class Conv2dLayer : SparseLayer
{
    /// <summary>Creates the layer. <paramref name="weight"/> is the filter bank flattened to [out, in·kh·kw] (PyTorch's layout).</summary>
    public Conv2dLayer(WeightMatrix weight, float[]? bias, int inChannels, (int H, int W) kernel, (int H, int W) stride = default, (int H, int W) padding = default, (int H, int W) dilation = default)
    {
        Weight = weight ?? throw new ArgumentNullException(nameof(weight));
        stride = stride == default ? (1, 1) : stride;
        dilation = dilation == default ? (1, 1) : dilation;
        if (inChannels < 1) throw new ArgumentOutOfRangeException(nameof(inChannels), inChannels, "Must be positive.");
        CheckPair(kernel, 1, nameof(kernel), "Kernel extents");
        CheckPair(stride, 1, nameof(stride), "Strides");
        CheckPair(padding, 0, nameof(padding), "Padding");
        CheckPair(dilation, 1, nameof(dilation), "Dilation");
        if ((long)inChannels * kernel.H * kernel.W != weight.Cols)
            throw new ArgumentException($"A {inChannels}-channel {kernel.H}×{kernel.W} filter has {(long)inChannels * kernel.H * kernel.W} weights, but the weight matrix has {weight.Cols} columns.", nameof(weight));
        Bias = CheckBias(bias, weight.Rows);
        InChannels = inChannels;
        Kernel = kernel;
        Stride = stride;
        Padding = padding;
        Dilation = dilation;
    }

    /// <summary>Filters flattened to [out channels, in channels·kh·kw].</summary>
    public WeightMatrix Weight { get; }

    /// <summary>Bias per output channel, or null.</summary>
    public float[]? Bias { get; }

    /// <summary>Input channels.</summary>
    public int InChannels { get; }

    /// <summary>Kernel height and width.</summary>
    public (int H, int W) Kernel { get; }

    /// <summary>Stride.</summary>
    public (int H, int W) Stride { get; }

    /// <summary>Zero padding on each side.</summary>
    public (int H, int W) Padding { get; }

    /// <summary>Dilation.</summary>
    public (int H, int W) Dilation { get; }

    private bool IsPointwise => Kernel == (1, 1) && Stride == (1, 1) && Padding == (0, 0);

    /// <inheritdoc />
    public override string Describe() => $"Conv2d {InChannels}→{Weight.Rows} {Kernel.H}×{Kernel.W}/{Stride.H} ({Format(Weight)})";

    /// <inheritdoc />
    public override long StoredParameters => Weight.StoredEntries + (Bias?.Length ?? 0);

    /// <inheritdoc />
    public override long StoredBytes => Weight.StoredBytes + (Bias?.Length ?? 0) * sizeof(float);

    /// <inheritdoc />
    public override FeatureShape OutputShape(FeatureShape input)
    {
        if (input.Channels != InChannels)
            throw new ArgumentException($"{Describe()} needs {InChannels} input channels, got {input}.", nameof(input));
        long h = ((long)input.Height + 2 * Padding.H - (long)Dilation.H * (Kernel.H - 1) - 1) / Stride.H + 1;
        long w = ((long)input.Width + 2 * Padding.W - (long)Dilation.W * (Kernel.W - 1) - 1) / Stride.W + 1;
        if (h < 1 || w < 1 || (long)input.Height + 2 * Padding.H < (long)Dilation.H * (Kernel.H - 1) + 1 || (long)input.Width + 2 * Padding.W < (long)Dilation.W * (Kernel.W - 1) + 1)
            throw new ArgumentException($"{Describe()} does not fit an input of {input}: the output would be empty.", nameof(input));
        return new FeatureShape(Weight.Rows, (int)h, (int)w);
    }

    internal override long ScratchSize(FeatureShape input, int batch)
    {
        if (IsPointwise) return 0;
        FeatureShape output = OutputShape(input);
        return (long)Weight.Cols * batch * output.Plane;
    }

    internal override void Forward(ReadOnlySpan<float> input, FeatureShape shape, Span<float> output, int batch, Span<float> scratch, int threads)
    {
        FeatureShape outShape = OutputShape(shape);
        int columns = batch * outShape.Plane;
        ReadOnlySpan<float> cols = IsPointwise ? input[..(InChannels * columns)] : Im2Col(input, shape, outShape, batch, scratch);
        Weight.Multiply(cols, output[..(Weight.Rows * columns)], columns, Bias, threads);
    }

    /// <summary>[C, N, H, W] → [C·kh·kw, N·Ho·Wo], zero where the window reaches into the padding.</summary>
    private Span<float> Im2Col(ReadOnlySpan<float> input, FeatureShape shape, FeatureShape outShape, int batch, Span<float> scratch)
    {
        int ho = outShape.Height, wo = outShape.Width, h = shape.Height, w = shape.Width;
        int columns = batch * ho * wo;
        Span<float> cols = scratch[..(Weight.Cols * columns)];
        int row = 0;
        for (int c = 0; c < InChannels; c++)
            for (int ky = 0; ky < Kernel.H; ky++)
                for (int kx = 0; kx < Kernel.W; kx++, row++)
                {
                    Span<float> dst = cols.Slice(row * columns, columns);
                    int k = 0;
                    for (int n = 0; n < batch; n++)
                    {
                        ReadOnlySpan<float> plane = input.Slice(((c * batch) + n) * h * w, h * w);
                        for (int oy = 0; oy < ho; oy++)
                        {
                            int iy = oy * Stride.H - Padding.H + ky * Dilation.H;
                            if ((uint)iy >= (uint)h) { dst.Slice(k, wo).Clear(); k += wo; continue; }
                            ReadOnlySpan<float> line = plane.Slice(iy * w, w);
                            for (int ox = 0; ox < wo; ox++, k++)
                            {
                                int ix = ox * Stride.W - Padding.W + kx * Dilation.W;
                                dst[k] = (uint)ix < (uint)w ? line[ix] : 0f;
                            }
                        }
                    }
                }
        return cols;
    }
}
