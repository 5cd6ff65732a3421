using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Pruning.Sparse.Kernels;
using Pruning.Sparse.Matrices;

namespace Pruning.Sparse.Layers;

/// <summary>How a <see cref="Conv2dLayer"/> computes its output.</summary>
public enum ConvAlgorithm
{
    /// <summary><see cref="Direct"/> for CSR or dense filters larger than 1×1, at any stride (not dense groups), <see cref="Im2Col"/> otherwise.</summary>
    Auto,
    /// <summary>
    /// im2col, then one matrix product W [out, in·kh·kw] × columns [in·kh·kw, N·Ho·Wo]. Any format and stride. Dense and
    /// CSR filters read the column matrix block by block as they multiply (it is never stored whole); block and N:M
    /// formats materialize it, kh·kw copies of the input.
    /// </summary>
    Im2Col,
    /// <summary>
    /// Direct convolution: the input is zero-padded once (at stride s, split into s_h·s_w phase planes of every s-th
    /// row and column), and each non-zero filter tap (channel, ky, kx) adds a shifted view of its plane, scaled, into
    /// the output. Needs CSR filters (one filter at a time, non-zeros only) or dense ones (four filters share each
    /// shifted load). On every stride-1 3×3 layer of resnet18, 64–512 channels, dense direct was 2.0–2.6× faster than
    /// im2col + our GEMM at batch 1 and 1.0–1.35× at batch 64; on its strided layers (7×7/2 stem, 3×3/2) direct beat
    /// im2col at 0 % and 90 % sparsity by 1.1–2.8× at batch 1 and up to 1.6× at batch 64. The shifted product computes
    /// every position of the plane, so at batch 16 and more, on feature maps whose (phase) plane is more than
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
    /// <exception cref="ArgumentException"><paramref name="algorithm"/> is <see cref="ConvAlgorithm.Direct"/> but the weight is neither CSR nor dense.</exception>
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
        bool directFits = weight is CsrMatrix or DenseMatrix;
        Algorithm = algorithm switch
        {
            // 1×1 filters are a plain product (stride 1) or one of a subsampled input (im2col's copy is the subsampling).
            ConvAlgorithm.Auto => directFits && kernel != (1, 1) ? ConvAlgorithm.Direct : ConvAlgorithm.Im2Col,
            ConvAlgorithm.Im2Col => ConvAlgorithm.Im2Col,
            ConvAlgorithm.Direct when directFits => ConvAlgorithm.Direct,
            ConvAlgorithm.Direct => throw new ArgumentException($"Direct convolution needs CSR or dense filters; this layer has {weight.Format} filters.", nameof(algorithm)),
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
    /// <see cref="WeightMatrix.FromDense"/>'s rule. Filters larger than 1×1 run by direct convolution either way.
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
        (long plane, long width, _) = DirectExtents(input, output, batch);
        long direct = checked((long)InChannels * Phases * batch * plane + Slack + CsrMatrix.ShiftedTilesFloats(Weight.Rows, (int)width, InChannels * Phases));
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
        (double)DirectExtents(input, output, 1).Plane > DirectMaxWaste * output.Plane;

    private bool RunsDirect(FeatureShape input, FeatureShape output, int batch) =>
        Algorithm == ConvAlgorithm.Direct && (batch < DirectMinBatchToSwitch || !Wasteful(input, output));

    /// <summary>
    /// Whether the layer can apply 2×2 max pooling as it stores (<see cref="Epilogue.PoolsMax2x2"/>) at this input and
    /// batch: one group, run direct, and two padded rows no wider than a column block.
    /// </summary>
    internal bool StoresPooled(FeatureShape input, int batch)
    {
        FeatureShape output = OutputShape(input);
        if (_groups is not null || !RunsDirect(input, output, batch)) return false;
        (_, long width, int pitch) = DirectExtents(input, output, batch);
        return 2L * pitch <= CsrMatrix.MaxShiftedAlign((int)width, InChannels * Phases);
    }

    /// <summary>Phase planes a strided direct convolution splits each padded input plane into: stride height × width (1 at stride 1).</summary>
    private int Phases => Stride.H * Stride.W;

    /// <summary>Whole vectors of slack after the padded input, so the wide output can be rounded up to them.</summary>
    private const int Slack = 16;

    /// <summary>
    /// The size of one phase plane (at stride s, the padded plane splits into s_h·s_w phase planes, phase (p, q)
    /// holding padded rows p, p + s_h, … and columns q, q + s_w, …; at stride 1 the padded plane itself), its row
    /// pitch, and the span of the "wide" output the shifted product computes: each output row carries the pitch minus
    /// the output width of garbage columns, and samples sit a phase plane apart. The span is rounded up to a multiple
    /// of <see cref="Slack"/> so that the kernel runs whole vectors only; the extra columns read the zeroed slack after
    /// the planes.
    /// </summary>
    private (long Plane, long Width, int Pitch) DirectExtents(FeatureShape input, FeatureShape output, int batch)
    {
        long hq = (input.Height + 2L * Padding.H + Stride.H - 1) / Stride.H, wq = (input.Width + 2L * Padding.W + Stride.W - 1) / Stride.W;
        long width = checked((batch - 1) * hq * wq + (output.Height - 1) * wq + output.Width);
        return (checked(hq * wq), checked((width + Slack - 1) / Slack * Slack), (int)wq);
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
    /// Convolution without im2col. With the input zero-padded to [C, N, Hp, Wp], output (n, oy, ox) of filter tap
    /// (c, ky, kx) reads padded element (c, n, s_h·oy + ky·d_h, s_w·ox + kx·d_w). At stride 1 that is the padded plane
    /// shifted by the tap's offset; at stride s the padded plane is first split into s_h·s_w phase planes (phase
    /// (p, q) = rows p, p + s_h, … and columns q, q + s_w, …), [C, phases, N, Hq, Wq], and the tap reads phase
    /// (ky·d_h mod s_h, kx·d_w mod s_w) shifted by (ky·d_h div s_h, kx·d_w div s_w): a stride-1 product again, with
    /// no zero taps (Park et al.'s sparse direct convolution, and the polyphase form of a strided filter). The output,
    /// laid out with the plane's row pitch, is one sparse (or dense) product whose operand row for each tap is its
    /// shifted plane, computed one column block at a time into a per-thread tile whose valid positions go straight
    /// to [out, N, Ho, Wo] while it is in cache (<see cref="ShiftedOutput"/>). Every tap's window ends inside its
    /// plane block, plus the rounding of the span into the zeroed slack.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private unsafe void ForwardDirect(ReadOnlySpan<float> input, FeatureShape shape, FeatureShape outShape, Span<float> output, int batch, Span<float> scratch, int threads, Epilogue epilogue)
    {
        (long planeLong, long widthLong, int wq) = DirectExtents(shape, outShape, batch);
        int plane = (int)planeLong, width = (int)widthLong;
        int h = shape.Height, w = shape.Width, ho = outShape.Height, wo = outShape.Width;
        int phases = Phases, paddedSize = checked(InChannels * phases * batch * plane);
        long stored = epilogue.PoolsMax2x2 ? (long)(ho / 2) * (wo / 2) : (long)ho * wo;
        if (input.Length < (long)shape.Size * batch || output.Length < Weight.Rows * batch * stored)
            throw new ArgumentException("The buffers are smaller than the shapes.", nameof(input));
        Span<float> padded = scratch[..(paddedSize + Slack)];
        Span<float> tiles = scratch.Slice(paddedSize + Slack, checked((int)CsrMatrix.ShiftedTilesFloats(Weight.Rows, width, InChannels * phases)));
        padded[paddedSize..].Clear();
        int[] offsets = TapOffsets(shape, batch, plane, wq);
        int planes = InChannels * batch;
        (int H, int W) pad = Padding, stride = Stride;
        fixed (float* src = input)
        fixed (float* x = padded)
        fixed (int* o = offsets)
        fixed (float* t = tiles)
        fixed (float* b = _bias)
        fixed (float* dst = output)
        {
            nint pSrc = (nint)src, pX = (nint)x;
            // Padding (and the phase split) is a copy, split across the kernel threads by input planes.
            Kernels.Parallelism.Run(Kernels.Parallelism.Even(planes, threads, (long)planes * plane * phases), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (first, end) =>
            {
                for (int p = first; p < end; p++)
                {
                    int c = p / batch, n = p - c * batch;
                    float* from = (float*)pSrc + (long)p * h * w;
                    // Phase (ph, pw) of channel c, sample n starts at ((c·phases + ph·s_w + pw)·N + n)·plane.
                    float* to = (float*)pX + ((long)c * phases * batch + n) * plane;
                    long phaseStride = (long)batch * plane;
                    if (stride == (1, 1) && pad == (0, 0)) { new Span<float>(from, h * w).CopyTo(new Span<float>(to, plane)); continue; }
                    for (int ph = 0; ph < phases; ph++) new Span<float>(to + ph * phaseStride, plane).Clear();
                    for (int row = 0; row < h; row++)
                    {
                        int y = row + pad.H;
                        float* line = to + (y % stride.H) * stride.W * phaseStride + (long)(y / stride.H) * wq;
                        PhaseRow(from + (long)row * w, w, line, phaseStride, stride.W, pad.W);
                    }
                }
            });
            // The product goes block by block through per-thread tiles straight into the compact output.
            var store = new ShiftedOutput(dst, batch, plane, wq, ho, wo, epilogue, Simd != SimdLevel.Scalar);
            if (Weight is CsrMatrix csr) csr.MultiplyShiftedCore(x, o, store, t, b, width, threads, Simd, footprintRows: InChannels * phases);
            else ((DenseMatrix)Weight).MultiplyShiftedCore(x, o, store, t, b, width, threads, Simd, footprintRows: InChannels * phases);
        }
    }

    /// <summary>
    /// Copies one input row into its phase rows: padded column X = x + <paramref name="padW"/> goes to phase X mod s,
    /// column X div s (phase q's row at line + q·<paramref name="phaseStride"/>). At stride 1 a plain copy; at stride
    /// 2 the even and odd inputs four at a time by vector shuffles.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void PhaseRow(float* from, int w, float* line, long phaseStride, int s, int padW)
    {
        if (s == 1)
        {
            new Span<float>(from, w).CopyTo(new Span<float>(line + padW, w));
            return;
        }
        int x = 0;
        if (s == 2 && Sse.IsSupported)
        {
            // Inputs 2k go to phase padW mod 2 at column k + padW div 2; inputs 2k + 1 to the other phase at k + (padW + 1) div 2.
            float* even = line + (padW % 2) * phaseStride + padW / 2, odd = line + ((padW + 1) % 2) * phaseStride + (padW + 1) / 2;
            for (; x + 8 <= w; x += 8)
            {
                Vector128<float> a = Sse.LoadVector128(from + x), b = Sse.LoadVector128(from + x + 4);
                Sse.Store(even + x / 2, Sse.Shuffle(a, b, 0b10_00_10_00));
                Sse.Store(odd + x / 2, Sse.Shuffle(a, b, 0b11_01_11_01));
            }
        }
        for (; x < w; x++)
        {
            int column = x + padW;
            line[(column % s) * phaseStride + column / s] = from[x];
        }
    }

    /// <summary>Offset into the phase planes of each filter tap (c, ky, kx), cached for the last shape and batch.</summary>
    private int[] TapOffsets(FeatureShape shape, int batch, int plane, int wq)
    {
        if (_taps is { } cached && cached.Shape == shape && cached.Batch == batch) return cached.Offsets;
        var offsets = new int[Weight.Cols];
        int t = 0;
        for (int c = 0; c < InChannels; c++)
            for (int ky = 0; ky < Kernel.H; ky++)
                for (int kx = 0; kx < Kernel.W; kx++)
                {
                    int y = ky * Dilation.H, x = kx * Dilation.W;
                    int phase = (y % Stride.H) * Stride.W + x % Stride.W;
                    offsets[t++] = checked(((c * Phases + phase) * batch) * plane + y / Stride.H * wq + x / Stride.W);
                }
        _taps = new TapTable(shape, batch, offsets);
        return offsets;
    }
}
