using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Timing;

namespace Pruning.Sparse.Tuning;

/// <summary>
/// Picks each layer's storage and algorithm by timing them on the machine that will run the model, at the batch size
/// it will run. <see cref="MatrixFormat.Auto"/> decides by density alone, which is wrong for layers small enough to
/// stay in cache (a 300×784 layer at batch 1 ran faster dense up to ~85 % sparsity on the machine the README
/// describes). The tuned model computes the same function; only speed and size change.
/// </summary>
public static class FormatTuning
{
    /// <summary>Candidates within this fraction of the fastest count as equally fast; the smallest of them is kept.</summary>
    public static double Tolerance { get; } = 0.03;

    /// <summary>
    /// The formats <see cref="Tune(SparseModel, int, int, int)"/> chooses among: those that keep every weight exactly
    /// (float32 CSR, block-sparse 1×4, 4×1 and 4×4 where the layer's shape tiles, 2:4 and 4:8 where its zeros follow
    /// the pattern, dense).
    /// </summary>
    public static IReadOnlyList<MatrixFormat> ExactFormats { get; } =
        [MatrixFormat.Csr, MatrixFormat.Bsr1x4, MatrixFormat.Bsr4x1, MatrixFormat.Bsr4x4, MatrixFormat.Nm2of4, MatrixFormat.Nm4of8, MatrixFormat.Dense];

    /// <summary>Every format: the exact ones and the compressed CSR values (half, int8 with row scales), which round the weights.</summary>
    public static IReadOnlyList<MatrixFormat> AllFormats { get; } =
        [MatrixFormat.Csr, MatrixFormat.CsrFloat16, MatrixFormat.CsrInt8, MatrixFormat.Bsr1x4, MatrixFormat.Bsr4x1, MatrixFormat.Bsr4x4,
         MatrixFormat.Nm2of4, MatrixFormat.Nm4of8, MatrixFormat.Dense];

    /// <summary>
    /// Times every Linear and Conv2d layer (inside residual, concatenation and scaling layers too, each at its own input
    /// shape) alone as CSR and as dense (and, for stride-1 convolutions, by direct convolution and by
    /// im2col), interleaved, median of <paramref name="runs"/> after warm-up, and returns a model that uses the fastest
    /// of each. A convolution is timed together with the ReLU and 2×2 max pooling after it, which it may apply as it
    /// stores. Other layers are kept as they are. The tuned model computes the same function.
    /// </summary>
    /// <param name="model">The model to tune.</param>
    /// <param name="batch">The batch size the model will run at.</param>
    /// <param name="runs">Timed runs per candidate.</param>
    /// <param name="threads">Threads the model will run with (0 = every core).</param>
    public static FormatTuningResult Tune(SparseModel model, int batch = 1, int runs = 31, int threads = 0) =>
        Tune(model, ExactFormats, batch, runs, threads, null);

    /// <summary>
    /// <see cref="Tune(SparseModel, int, int, int)"/> choosing among <paramref name="formats"/> (e.g. <see cref="AllFormats"/>:
    /// compressed values move fewer bytes and run faster where a layer is bound by memory, and round each weight, see
    /// <see cref="CsrMatrix.Compress"/>). Among candidates within <see cref="Tolerance"/> of the fastest, the smallest is kept.
    /// Check the tuned model's accuracy when rounding formats are allowed.
    /// </summary>
    public static FormatTuningResult Tune(SparseModel model, IReadOnlyList<MatrixFormat> formats, int batch = 1, int runs = 31, int threads = 0) =>
        Tune(model, formats, batch, runs, threads, null);

    /// <summary><see cref="Tune(SparseModel, IReadOnlyList{MatrixFormat}, int, int, int)"/> with an injectable timer (tests): candidate model → milliseconds.</summary>
    internal static FormatTuningResult Tune(SparseModel model, IReadOnlyList<MatrixFormat> formats, int batch, int runs, int threads, Func<SparseModel, double>? time)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(formats);
        if (formats.Count == 0 || formats.Any(f => f == MatrixFormat.Auto || !Enum.IsDefined(f)) || formats.Distinct().Count() != formats.Count)
            throw new ArgumentException($"The formats must be distinct, concrete formats (not Auto); got [{string.Join(", ", formats)}].", nameof(formats));
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(runs, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(threads);
        var choices = new List<LayerFormatChoice>();
        var tuner = new ChainTuner(formats, batch, runs, threads, time, choices);
        IReadOnlyList<SparseLayer> layers = tuner.Tune(model.Layers, model.InputShape, top: true, "");
        return new FormatTuningResult(new SparseModel(model.InputShape, layers), choices);
    }

    /// <summary>Tunes the weighted layers of a chain in order, and those inside its residual, concatenation and scaling layers at their own input shapes.</summary>
    private sealed class ChainTuner(IReadOnlyList<MatrixFormat> formats, int batch, int runs, int threads, Func<SparseModel, double>? time, List<LayerFormatChoice> choices)
    {
        private readonly Random _random = new(1);
        private int _top;

        public IReadOnlyList<SparseLayer> Tune(IReadOnlyList<SparseLayer> chain, FeatureShape shape, bool top, string where)
        {
            var layers = new List<SparseLayer>(chain.Count);
            for (int i = 0; i < chain.Count; i++)
            {
                if (top) _top = i;
                SparseLayer layer = chain[i];
                string at = top ? $"{i}" : $"{where}.{i}";
                layers.Add(layer switch
                {
                    ResidualLayer r => new ResidualLayer(Tune(r.Main, shape, false, $"{at}.main"), r.Shortcut.Count == 0 ? null : Tune(r.Shortcut, shape, false, $"{at}.shortcut")),
                    ConcatLayer c => new ConcatLayer(c.Branches.Select((branch, k) => branch.Count == 0 ? branch : Tune(branch, shape, false, $"{at}.branch{k}")).ToArray()),
                    ScaleLayer s => new ScaleLayer(Tune(s.Factors, shape, false, $"{at}.factors")),
                    _ => Choose(layer, shape, at, Followers(chain, i, shape)),
                });
                shape = layer.OutputShape(shape);
            }
            return layers;
        }

        /// <summary>The layers a convolution may apply as it stores (<see cref="LayerChains.Fusible"/>): each candidate is timed with them, so one that can fuse them is credited for it.</summary>
        private static SparseLayer[] Followers(IReadOnlyList<SparseLayer> chain, int i, FeatureShape shape)
        {
            var (activation, pool) = LayerChains.Fusible(chain, i, shape);
            return new SparseLayer?[] { activation, pool }.OfType<SparseLayer>().ToArray();
        }

        private SparseLayer Choose(SparseLayer layer, FeatureShape shape, string at, SparseLayer[] followers)
        {
            SparseLayer[] candidates = Candidates(layer, formats);
            if (candidates.Length <= 1) return layer;
            SparseModel[] alone = candidates.Select(c => new SparseModel(shape, [c, .. followers])).ToArray();
            double[] ms = time is null ? Measure(alone, batch, runs, threads, _random) : alone.Select(time).ToArray();
            double fastest = ms.Min();
            int chosen = Enumerable.Range(0, candidates.Length)
                .Where(c => ms[c] <= fastest * (1 + Tolerance))
                .MinBy(c => candidates[c].StoredBytes);
            choices.Add(new LayerFormatChoice(_top, candidates.Select((c, k) => (c.Describe(), ms[k])).ToArray(), candidates[chosen].Describe()) { Where = at });
            return candidates[chosen];
        }
    }

    /// <summary>
    /// The same model with every Linear and Conv2d weight, inside residual, concatenation and scaling layers too,
    /// stored in <paramref name="format"/> (e.g. <see cref="MatrixFormat.Dense"/>: the same weights as a dense
    /// baseline). The values are the same; only their storage and kernels change.
    /// </summary>
    /// <exception cref="ArgumentException">A layer's weight cannot be stored in <paramref name="format"/> (a block shape that does not tile it, zeros that do not follow an N:M pattern); the message names the layer.</exception>
    public static SparseModel Reencode(SparseModel model, MatrixFormat format)
    {
        ArgumentNullException.ThrowIfNull(model);
        return new SparseModel(model.InputShape, Reencode(model.Layers, format, "layer "), model.Options);
    }

    private static SparseLayer[] Reencode(IReadOnlyList<SparseLayer> chain, MatrixFormat format, string where) =>
        chain.Select((layer, i) => Reencode(layer, format, $"{where}{i}")).ToArray();

    private static SparseLayer Reencode(SparseLayer layer, MatrixFormat format, string where)
    {
        try
        {
            return layer switch
            {
                LinearLayer linear => new LinearLayer(WeightMatrix.FromDense(linear.Weight.ToDense(), linear.Weight.Rows, linear.Weight.Cols, format), linear.Bias),
                Conv2dLayer conv => new Conv2dLayer(WeightMatrix.FromDense(conv.Weight.ToDense(), conv.Weight.Rows, conv.Weight.Cols, format), conv.Bias,
                    conv.InChannels, conv.Kernel, conv.Stride, conv.Padding, conv.Dilation, ConvAlgorithm.Auto, conv.Groups),
                ResidualLayer residual => new ResidualLayer(Reencode(residual.Main, format, $"{where}.main."), Reencode(residual.Shortcut, format, $"{where}.shortcut.")),
                ConcatLayer concat => new ConcatLayer(concat.Branches.Select((b, i) => (IReadOnlyList<SparseLayer>)Reencode(b, format, $"{where}.branch{i}.")).ToArray()),
                ScaleLayer scale => new ScaleLayer(Reencode(scale.Factors, format, $"{where}.factors.")),
                _ => layer,
            };
        }
        catch (ArgumentException e) when (layer is LinearLayer or Conv2dLayer)
        {
            throw new ArgumentException($"{where} ({layer.Describe()}) cannot be stored as {format}: {e.Message}", nameof(format), e);
        }
    }

    private static SparseLayer[] Candidates(SparseLayer layer, IReadOnlyList<MatrixFormat> formats)
    {
        switch (layer)
        {
            case LinearLayer linear:
            {
                float[] w = linear.Weight.ToDense();
                return formats.Where(f => Fits(f, linear.Weight, w))
                    .Select(f => (SparseLayer)new LinearLayer(WeightMatrix.FromDense(w, linear.Weight.Rows, linear.Weight.Cols, f), linear.Bias)).ToArray();
            }
            case Conv2dLayer conv:
            {
                float[] w = conv.Weight.ToDense();
                var list = new List<SparseLayer>();
                foreach (MatrixFormat format in formats.Where(f => Fits(f, conv.Weight, w)))
                {
                    WeightMatrix matrix = WeightMatrix.FromDense(w, conv.Weight.Rows, conv.Weight.Cols, format);
                    if (matrix is CsrMatrix or DenseMatrix && (conv.Stride == (1, 1) || conv.Kernel != (1, 1)))
                        list.Add(new Conv2dLayer(matrix, conv.Bias, conv.InChannels, conv.Kernel, conv.Stride, conv.Padding, conv.Dilation, ConvAlgorithm.Direct, conv.Groups));
                    list.Add(new Conv2dLayer(matrix, conv.Bias, conv.InChannels, conv.Kernel, conv.Stride, conv.Padding, conv.Dilation, ConvAlgorithm.Im2Col, conv.Groups));
                }
                return [.. list];
            }
            default:
                return [layer];
        }
    }

    /// <summary>Block formats only where the layer's shape tiles into their blocks; N:M only where its zeros follow the pattern.</summary>
    private static bool Fits(MatrixFormat format, WeightMatrix weight, float[] dense) => format switch
    {
        MatrixFormat.Bsr1x4 or MatrixFormat.Bsr4x1 or MatrixFormat.Bsr4x4 => BsrMatrix.Fits(weight.Rows, weight.Cols, BsrMatrix.ShapeOf(format)),
        MatrixFormat.Nm2of4 or MatrixFormat.Nm4of8 => NmMatrix.Fits(dense, weight.Rows, weight.Cols, NmMatrix.PatternOf(format)),
        _ => true,
    };

    /// <summary>Every candidate alone on the same random input, round-robin, medians (see <see cref="LatencyTimer"/>).</summary>
    private static double[] Measure(SparseModel[] candidates, int batch, int runs, int threads, Random random)
    {
        var input = new float[candidates[0].InputShape.Size * batch];
        for (int k = 0; k < input.Length; k++) input[k] = (float)(random.NextDouble() * 2 - 1);
        Action[] bodies = candidates.Select(c =>
        {
            var output = new float[c.OutputShape.Size * batch];
            return (Action)(() => c.Run(input, output, batch, threads));
        }).ToArray();
        return LatencyTimer.Medians(bodies, warmup: 3, runs, StopwatchClock.Instance);
    }
}
