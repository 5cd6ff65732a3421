using System.Runtime.CompilerServices;
using Pruning.Sparse.Kernels;
using Pruning.Sparse.Matrices;

namespace Pruning.Sparse.Layers;

/// <summary>How a <see cref="Conv2dLayer"/> computes its output.</summary>
public enum ConvAlgorithm
{
    /// <summary><see cref="Direct"/> for CSR or dense filters with stride 1 (not 1×1 without padding, and not dense groups), <see cref="Im2Col"/> otherwise.</summary>
    Auto,
    /// <summary>
    /// im2col, then one matrix product W [out, in·kh·kw] × columns [in·kh·kw, N·Ho·Wo]. Any format and stride. Dense and
    /// CSR filters read the column matrix block by block as they multiply (it is never stored whole); block and N:M
    /// formats materialize it, kh·kw copies of the input.
    /// </summary>
    Im2Col,
    /// <summary>
    /// Direct convolution: the input is zero-padded once, and each non-zero filter tap (channel, ky, kx) adds a
    /// shifted view of its padded channel, scaled, into the output. Needs stride 1 and CSR filters (one filter at a time,
    /// non-zeros only) or dense ones (four filters share each shifted load: on every stride-1 3×3 layer of resnet18,
    /// 64–512 channels, 2.0–2.6× faster than im2col + our GEMM at batch 1 and 1.0–1.35× at batch 64). The shifted product
    /// computes every padded position, so at batch 16 and more, on feature maps whose padded plane is more than
    /// <see cref="Conv2dLayer.DirectMaxWaste"/> times the output plane (4×4 and smaller for a padded 3×3), the layer
    /// runs <see cref="Im2Col"/> instead.
    /// </summary>
    Direct,
}

/// <summary>
/// 2-D convolution over a filter bank W [out channels, in channels / groups · kh·kw] (PyTorch's layout), computed by
/// im2col + matrix product or by direct sparse convolution (<see cref="ConvAlgorithm"/>). A 1×1 convolution with
/// stride 1 and no padding is a plain matrix product either way. With <see cref="Groups"/> &gt; 1 (depthwise when it
/// equals the channels) each group's slice of input channels, contiguous in the runtime's [C, N, H, W] layout, is
/// convolved with its own rows of W into its slice of output channels.
/// </summary>
public sealed class Conv2dLayer : SparseLayer
{
    /// <summary>Tap offsets for the last input shape and batch; one reference, so concurrent models see a whole table.</summary>
    private TapTable? _taps;

    private sealed record TapTable(FeatureShape Shape, int Batch, int[] Offsets);

    private readonly float[]? _bias;

    /// <summary>One single-group layer per group when <see cref="Groups"/> &gt; 1; null otherwise.</summary>
    private readonly Conv2dLayer[]? _groups;

    /// <summary>
    /// Creates the layer. <paramref name="weight"/> is the filter bank flattened to [out, in / groups · kh·kw] (PyTorch's
    /// layout); <paramref name="bias"/> holds one value per output channel (copied), or is empty for none.
    /// <paramref name="groups"/> must divide both the input and the output channels.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="algorithm"/> is <see cref="ConvAlgorithm.Direct"/> but the weight is not CSR or the stride is not 1.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An extent is outside [1, 1024], or the padding is so large that some output windows see only padding.</exception>
    public Conv2dLayer(WeightMatrix weight, ReadOnlySpan<float> bias, int inChannels, (int H, int W) kernel, (int H, int W) stride = default, (int H, int W) padding = default, (int H, int W) dilation = default, ConvAlgorithm algorithm = ConvAlgorithm.Auto, int groups = 1)
    {
        Weight = weight ?? throw new ArgumentNullException(nameof(weight));
        stride = stride == default ? (1, 1) : stride;
        dilation = dilation == default ? (1, 1) : dilation;
        if (inChannels < 1) throw new ArgumentOutOfRangeException(nameof(inChannels), inChannels, "Must be positive.");
        if (groups < 1 || inChannels % groups != 0 || weight.Rows % groups != 0)
            throw new ArgumentOutOfRangeException(nameof(groups), groups, $"Groups must be positive and divide the {inChannels} input and {weight.Rows} output channels.");
        Groups = groups;
        if (groups > 1)
        {
            // Each group is a single-group layer over its rows of W; the whole W stays the layer's weight (file, description).
            if ((long)inChannels / groups * kernel.H * kernel.W != weight.Cols)
                throw new ArgumentException($"A grouped filter sees {inChannels / groups} channels of {kernel.H}×{kernel.W}, {(long)inChannels / groups * kernel.H * kernel.W} weights, but the weight matrix has {weight.Cols} columns.", nameof(weight));
            float[] dense = weight.ToDense();
            int rows = weight.Rows / groups;
            _bias = CopyBias(bias, weight.Rows);
            _groups = new Conv2dLayer[groups];
            for (int g = 0; g < groups; g++)
            {
                ReadOnlySpan<float> slice = dense.AsSpan(g * rows * weight.Cols, rows * weight.Cols);
                WeightMatrix part;
                try { part = WeightMatrix.FromDense(slice, rows, weight.Cols, weight.Format); }
                catch (ArgumentException) { part = WeightMatrix.FromDense(slice, rows, weight.Cols); }   // a block or N:M format the slice does not fit
                // Dense groups (depthwise) keep im2col under Auto: direct was measured on single-group layers only.
                ConvAlgorithm perGroup = algorithm == ConvAlgorithm.Auto && part is DenseMatrix ? ConvAlgorithm.Im2Col : algorithm;
                _groups[g] = new Conv2dLayer(part, _bias is null ? default : _bias.AsSpan(g * rows, rows), inChannels / groups, kernel, stride, padding, dilation, perGroup);
            }
            InChannels = inChannels;
            Kernel = kernel;
            Stride = _groups[0].Stride;
            Padding = padding;
            Dilation = _groups[0].Dilation;
            Algorithm = _groups[0].Algorithm;
            return;
        }
        CheckPair(kernel, 1, nameof(kernel), "Kernel extents");
        CheckPair(stride, 1, nameof(stride), "Strides");
        CheckPair(padding, 0, nameof(padding), "Padding");
        CheckPair(dilation, 1, nameof(dilation), "Dilation");
        if ((long)inChannels * kernel.H * kernel.W != weight.Cols)
            throw new ArgumentException($"A {inChannels}-channel {kernel.H}×{kernel.W} filter has {(long)inChannels * kernel.H * kernel.W} weights, but the weight matrix has {weight.Cols} columns.", nameof(weight));
        if (padding.H > dilation.H * (kernel.H - 1) || padding.W > dilation.W * (kernel.W - 1))
            throw new ArgumentOutOfRangeException(nameof(padding), padding,
                $"Padding {padding} is more than the {kernel.H}×{kernel.W} kernel (dilation {dilation}) can reach into: every output window must overlap the input, so padding may be at most dilation·(kernel − 1) = ({dilation.H * (kernel.H - 1)}, {dilation.W * (kernel.W - 1)}).");
        _bias = CopyBias(bias, weight.Rows);
        InChannels = inChannels;
        Kernel = kernel;
        Stride = stride;
        Padding = padding;
        Dilation = dilation;
        bool directFits = weight is CsrMatrix or DenseMatrix && stride == (1, 1);
        Algorithm = algorithm switch
        {
            ConvAlgorithm.Auto => directFits && !IsPointwise ? ConvAlgorithm.Direct : ConvAlgorithm.Im2Col,
            ConvAlgorithm.Im2Col => ConvAlgorithm.Im2Col,
            ConvAlgorithm.Direct when directFits => ConvAlgorithm.Direct,
            ConvAlgorithm.Direct => throw new ArgumentException($"Direct convolution needs CSR or dense filters and stride 1; this layer has {weight.Format} filters and stride {stride}.", nameof(algorithm)),
            _ => throw new ArgumentOutOfRangeException(nameof(algorithm), algorithm, "Unknown convolution algorithm."),
        };
    }

    /// <summary>
    /// <see cref="FromDense"/> with <see cref="MatrixFormat.Auto"/> stores stride-1 filters as CSR, run by direct
    /// convolution, when at most this fraction of them is non-zero. Measured on the Fashion-MNIST CNN layer shapes
    /// (`quick --conv`, 2-core AVX-512): direct CSR beat im2col + our dense kernel on every shape at 50 % sparsity,
    /// batch 1 and 16, by 1.3–5.8×, and on most shapes even at 0 %; the limit keeps files from growing (a CSR entry
    /// takes 6 bytes, a dense one 4).
    /// </summary>
    public static double DirectMaxDensity { get; } = 0.5;

    /// <summary>
    /// Builds a layer from PyTorch's filter bank [out, in, kh, kw] (row-major). <see cref="MatrixFormat.Auto"/> picks
    /// CSR for stride 1 at density ≤ <see cref="DirectMaxDensity"/>, dense above; otherwise
    /// <see cref="WeightMatrix.FromDense"/>'s rule. Stride-1 layers run by direct convolution either way.
    /// </summary>
    public static Conv2dLayer FromDense(ReadOnlySpan<float> filters, int outChannels, ReadOnlySpan<float> bias, int inChannels, (int H, int W) kernel, (int H, int W) stride = default, (int H, int W) padding = default, (int H, int W) dilation = default, MatrixFormat format = MatrixFormat.Auto, int groups = 1)
    {
        if (outChannels < 1) throw new ArgumentOutOfRangeException(nameof(outChannels), outChannels, "Must be positive.");
        if (filters.Length % outChannels != 0)
            throw new ArgumentException($"{filters.Length} filter values do not split into {outChannels} output channels.", nameof(filters));
        if (format == MatrixFormat.Auto && (stride == default || stride == (1, 1)))
        {
            long nonZeros = 0;
            foreach (float v in filters) if (v != 0) nonZeros++;
            // Above this limit the general rule (CsrMaxDensity, lower) says dense as well.
            format = nonZeros <= DirectMaxDensity * filters.Length ? MatrixFormat.Csr : MatrixFormat.Dense;
        }
        WeightMatrix weight = WeightMatrix.FromDense(filters, outChannels, filters.Length / outChannels, format);
        return new Conv2dLayer(weight, bias, inChannels, kernel, stride, padding, dilation, groups: groups);
    }

    /// <summary>The algorithm the layer runs (<see cref="ConvAlgorithm.Auto"/> resolved at construction).</summary>
    public ConvAlgorithm Algorithm { get; }

    /// <summary>Vector width of the direct kernel; tests run every level.</summary>
    internal SimdLevel Simd { get; init; } = SimdSupport.Best;

    /// <summary>Filters flattened to [out channels, in channels·kh·kw].</summary>
    public WeightMatrix Weight { get; }

    /// <summary>Bias per output channel; empty when the layer has none.</summary>
    public ReadOnlySpan<float> Bias => _bias;

    /// <summary>Input channels (all groups).</summary>
    public int InChannels { get; }

    /// <summary>Channel groups: 1 for an ordinary convolution, the channel count for a depthwise one.</summary>
    public int Groups { get; }

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
    public override string Describe() => $"Conv2d {InChannels}→{Weight.Rows} {Kernel.H}×{Kernel.W}/{Stride.H}{(Groups > 1 ? $" groups {Groups}" : "")} ({Format(Weight)}{(Algorithm == ConvAlgorithm.Direct ? ", direct" : "")})";

    /// <inheritdoc />
    public override long StoredParameters => Weight.StoredEntries + Bias.Length;

    /// <inheritdoc />
    public override long StoredBytes => Weight.StoredBytes + Bias.Length * sizeof(float);

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
        FeatureShape output = OutputShape(input);
        if (_groups is not null) return _groups[0].ScratchSize(new FeatureShape(InChannels / Groups, input.Height, input.Width), batch);
        long im2col = IsPointwise ? 0 : Weight.ColumnsScratch(checked(batch * output.Plane));
        if (Algorithm != ConvAlgorithm.Direct) return im2col;
        (long plane, long width) = DirectExtents(input, output, batch);
        long direct = checked((long)InChannels * batch * plane + Slack + CsrMatrix.ShiftedTilesFloats(Weight.Rows, (int)width, InChannels));
        // Either may run depending on the batch; the larger serves both, and every smaller batch.
        return Wasteful(input, output) ? Math.Max(direct, im2col) : direct;
    }

    /// <summary>
    /// <see cref="ConvAlgorithm.Direct"/> runs im2col instead where the padded input plane is more than this many
    /// times the output plane, at batch 16 and more. Measured on resnet18's layers (`quick --models resnet18 --layers`,
    /// 2-core AVX-512): at batch 64 direct won on 16×16 (waste 1.27) and 8×8 maps (1.56), im2col on 4×4 (2.25) and
    /// 2×2 (4); at batch 1 direct won on all of them.
    /// </summary>
    public static double DirectMaxWaste => 2.0;

    /// <summary>Below this batch <see cref="ConvAlgorithm.Direct"/> always runs direct: im2col's few columns lose to the waste (same measurement).</summary>
    private const int DirectMinBatchToSwitch = 16;

    private bool Wasteful(FeatureShape input, FeatureShape output) =>
        (input.Height + 2.0 * Padding.H) * (input.Width + 2.0 * Padding.W) > DirectMaxWaste * output.Plane;

    private bool RunsDirect(FeatureShape input, FeatureShape output, int batch) =>
        Algorithm == ConvAlgorithm.Direct && (batch < DirectMinBatchToSwitch || !Wasteful(input, output));

    /// <summary>
    /// Whether the layer can apply 2×2 max pooling as it stores (<see cref="Epilogue.PoolsMax2x2"/>) at this input and
    /// batch: one group, run direct, and two padded rows no wider than a column block.
    /// </summary>
    internal bool StoresPooled(FeatureShape input, int batch)
    {
        if (_groups is not null || !RunsDirect(input, OutputShape(input), batch)) return false;
        (_, long width) = DirectExtents(input, OutputShape(input), batch);
        return 2L * (input.Width + 2 * Padding.W) <= CsrMatrix.MaxShiftedAlign((int)width, InChannels);
    }

    /// <summary>Whole vectors of slack after the padded input, so the wide output can be rounded up to them.</summary>
    private const int Slack = 16;

    /// <summary>
    /// Padded plane size, and the span of the "wide" output the shifted product computes: row pitch is the padded
    /// width, so each output row carries kw−1 (dilated) columns of garbage, and samples sit a padded plane apart. The
    /// span is rounded up to a multiple of <see cref="Slack"/> so that the kernel runs whole vectors only; the extra
    /// columns read the zeroed slack after the padded input.
    /// </summary>
    private (long Plane, long Width) DirectExtents(FeatureShape input, FeatureShape output, int batch)
    {
        long hp = input.Height + 2L * Padding.H, wp = input.Width + 2L * Padding.W;
        long width = checked((batch - 1) * hp * wp + (output.Height - 1) * wp + output.Width);
        return (checked(hp * wp), checked((width + Slack - 1) / Slack * Slack));
    }

    internal override void Forward(ReadOnlySpan<float> input, FeatureShape shape, Span<float> output, int batch, Span<float> scratch, int threads) =>
        Forward(input, shape, output, batch, scratch, threads, Epilogue.None);

    /// <summary>
    /// The convolution followed by <paramref name="epilogue"/>'s activation (see <see cref="LayerChains.FusedAfter"/>):
    /// direct convolution applies it as it stores each tile, the other paths in one pass over their output.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal unsafe void Forward(ReadOnlySpan<float> input, FeatureShape shape, Span<float> output, int batch, Span<float> scratch, int threads, Epilogue epilogue)
    {
        FeatureShape outShape = OutputShape(shape);
        if (_groups is not null)
        {
            // [C, N, H, W]: group g's channels are one contiguous slice of the input, its outputs one of the output.
            var part = new FeatureShape(InChannels / Groups, shape.Height, shape.Width);
            int inSize = part.Size * batch, outSize = Weight.Rows / Groups * outShape.Plane * batch;
            for (int g = 0; g < Groups; g++)
                _groups[g].Forward(input.Slice(g * inSize, inSize), part, output.Slice(g * outSize, outSize), batch, scratch, threads, epilogue);
            return;
        }
        if (epilogue.PoolsMax2x2 && !StoresPooled(shape, batch))
            throw new InvalidOperationException($"{Describe()} cannot pool as it stores at input {shape}, batch {batch}.");
        if (RunsDirect(shape, outShape, batch))
        {
            ForwardDirect(input, shape, outShape, output, batch, scratch, threads, epilogue);
            return;
        }
        int columns = batch * outShape.Plane;
        if (IsPointwise)
        {
            Weight.Multiply(input[..(InChannels * columns)], output[..(Weight.Rows * columns)], columns, Bias, threads, Simd);
            epilogue.ApplyInPlace(output[..(Weight.Rows * columns)], outShape, batch, threads);
            return;
        }
        if (input.Length < (long)shape.Size * batch || output.Length < (long)Weight.Rows * columns)
            throw new ArgumentException("The buffers are smaller than the shapes.", nameof(input));
        fixed (float* x = input)
        fixed (float* y = output)
        fixed (float* b = _bias)
        {
            var im2col = new Im2ColColumns(x, InChannels, batch, (shape.Height, shape.Width), (outShape.Height, outShape.Width), Kernel, Stride, Padding, Dilation, Simd);
            Weight.MultiplyColumns(im2col, y, b, threads, Simd, scratch);
        }
        epilogue.ApplyInPlace(output[..(Weight.Rows * columns)], outShape, batch, threads);
    }

    /// <summary>
    /// Stride-1 convolution without im2col. With the input zero-padded to [C, N, Hp, Wp], output (n, oy, ox) of filter
    /// tap (c, ky, kx) reads padded element c·N·Hp·Wp + n·Hp·Wp + (oy + ky·dy)·Wp + (ox + kx·dx): the output, laid out
    /// with the padded row pitch, is one sparse product whose operand row for tap (c, ky, kx) is the padded input
    /// shifted by that tap's offset. The kernel is the batched SpMM, vectorized along the output positions, one column
    /// block at a time into a per-thread tile whose valid positions go straight to [out, N, Ho, Wo] while it is in
    /// cache (<see cref="ShiftedOutput"/>). The last tap's window ends exactly at the padded input's end, plus the
    /// rounding of the span into the zeroed slack.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private unsafe void ForwardDirect(ReadOnlySpan<float> input, FeatureShape shape, FeatureShape outShape, Span<float> output, int batch, Span<float> scratch, int threads, Epilogue epilogue)
    {
        (long planeLong, long widthLong) = DirectExtents(shape, outShape, batch);
        int plane = (int)planeLong, width = (int)widthLong;
        int h = shape.Height, w = shape.Width, wp = w + 2 * Padding.W, ho = outShape.Height, wo = outShape.Width;
        int paddedSize = InChannels * batch * plane;
        long stored = epilogue.PoolsMax2x2 ? (long)(ho / 2) * (wo / 2) : (long)ho * wo;
        if (input.Length < (long)shape.Size * batch || output.Length < Weight.Rows * batch * stored)
            throw new ArgumentException("The buffers are smaller than the shapes.", nameof(input));
        Span<float> padded = scratch[..(paddedSize + Slack)];
        Span<float> tiles = scratch.Slice(paddedSize + Slack, checked((int)CsrMatrix.ShiftedTilesFloats(Weight.Rows, width, InChannels)));
        padded[paddedSize..].Clear();
        int[] offsets = TapOffsets(shape, batch, plane, wp);
        int planes = InChannels * batch;
        (int H, int W) pad = Padding;
        fixed (float* src = input)
        fixed (float* x = padded)
        fixed (int* o = offsets)
        fixed (float* t = tiles)
        fixed (float* b = _bias)
        fixed (float* dst = output)
        {
            nint pSrc = (nint)src, pX = (nint)x;
            // Padding is a plain copy, split across the kernel threads by planes.
            Kernels.Parallelism.Run(Kernels.Parallelism.Even(planes, threads, (long)planes * plane), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (first, end) =>
            {
                for (int p = first; p < end; p++)
                {
                    float* from = (float*)pSrc + (long)p * h * w, to = (float*)pX + (long)p * plane;
                    if (pad == (0, 0)) { new Span<float>(from, h * w).CopyTo(new Span<float>(to, plane)); continue; }
                    new Span<float>(to, plane).Clear();
                    for (int row = 0; row < h; row++)
                        new Span<float>(from + row * w, w).CopyTo(new Span<float>(to + (row + pad.H) * wp + pad.W, w));
                }
            });
            // The product goes block by block through per-thread tiles straight into the compact output.
            var store = new ShiftedOutput(dst, batch, plane, wp, ho, wo, epilogue, Simd != SimdLevel.Scalar);
            if (Weight is CsrMatrix csr) csr.MultiplyShiftedCore(x, o, store, t, b, width, threads, Simd, footprintRows: InChannels);
            else ((DenseMatrix)Weight).MultiplyShiftedCore(x, o, store, t, b, width, threads, Simd, footprintRows: InChannels);
        }
    }

    /// <summary>Offset into the padded input of each filter tap (c, ky, kx), cached for the last shape and batch.</summary>
    private int[] TapOffsets(FeatureShape shape, int batch, int plane, int wp)
    {
        if (_taps is { } cached && cached.Shape == shape && cached.Batch == batch) return cached.Offsets;
        var offsets = new int[Weight.Cols];
        int t = 0;
        for (int c = 0; c < InChannels; c++)
            for (int ky = 0; ky < Kernel.H; ky++)
                for (int kx = 0; kx < Kernel.W; kx++)
                    offsets[t++] = c * batch * plane + ky * Dilation.H * wp + kx * Dilation.W;
        _taps = new TapTable(shape, batch, offsets);
        return offsets;
    }
}
