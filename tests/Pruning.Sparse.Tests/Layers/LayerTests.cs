using Pruning.Sparse.Serialization;
using Pruning.Sparse.Kernels;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;

namespace Pruning.Sparse.Tests.Layers;

public class LayerTests
{
    /// <summary>Direct convolution over NCHW input, the textbook loop.</summary>
    private static float[] Conv(float[] x, int n, int c, int h, int w, float[] weight, int outC, int kh, int kw, int s, int p, int d, float[] bias)
    {
        int ho = (h + 2 * p - d * (kh - 1) - 1) / s + 1, wo = (w + 2 * p - d * (kw - 1) - 1) / s + 1;
        var y = new float[n * outC * ho * wo];
        for (int b = 0; b < n; b++)
            for (int o = 0; o < outC; o++)
                for (int oy = 0; oy < ho; oy++)
                    for (int ox = 0; ox < wo; ox++)
                    {
                        double acc = bias[o];
                        for (int ci = 0; ci < c; ci++)
                            for (int ky = 0; ky < kh; ky++)
                                for (int kx = 0; kx < kw; kx++)
                                {
                                    int iy = oy * s - p + ky * d, ix = ox * s - p + kx * d;
                                    if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                    acc += weight[((o * c + ci) * kh + ky) * kw + kx] * x[((b * c + ci) * h + iy) * w + ix];
                                }
                        y[((b * outC + o) * ho + oy) * wo + ox] = (float)acc;
                    }
        return y;
    }

    [Theory]
    [InlineData(1, 3, 9, 9, 5, 3, 1, 1, 1)]
    [InlineData(3, 2, 8, 7, 4, 3, 2, 0, 1)]
    [InlineData(2, 4, 6, 6, 3, 1, 1, 0, 1)]   // 1×1: the path without im2col
    [InlineData(2, 2, 10, 10, 3, 3, 1, 2, 2)] // dilated and padded
    [InlineData(3, 2, 5, 11, 7, 5, 1, 2, 1)]  // kernel as tall as the input, wide rows, odd batch
    [InlineData(2, 1, 1, 9, 2, 1, 1, 0, 1)]   // a single input row
    [InlineData(2, 3, 13, 12, 14, 7, 2, 3, 1)] // a 7×7 stride-2 stem: padding on both sides of every line, 14 rows (two panels)
    [InlineData(1, 2, 7, 9, 3, 3, 3, 4, 2)]   // stride 3, dilated, padding so wide that some windows see one input column
    public void Conv2d_matches_a_direct_convolution(int n, int c, int h, int w, int outC, int k, int s, int p, int d)
    {
        float[] weight = Reference.Sparse(outC, c * k * k, 0.7, seed: 5);
        float[] bias = Reference.Random(outC, 6);
        float[] x = Reference.Random((long)n * c * h * w, 7);
        float[] expected = Conv(x, n, c, h, w, weight, outC, k, k, s, p, d, bias);
        var variants = new List<(MatrixFormat Format, ConvAlgorithm Algorithm, SimdLevel Simd)>
        {
            (MatrixFormat.Csr, ConvAlgorithm.Im2Col, SimdSupport.Best),
            (MatrixFormat.Dense, ConvAlgorithm.Im2Col, SimdSupport.Best),
        };
        // Direct at every stride: strided filters through phase planes (stride 2 by vector shuffles, stride 3 element by element).
        variants.AddRange(Reference.Levels.SelectMany(level => new[] { (MatrixFormat.Csr, ConvAlgorithm.Direct, level), (MatrixFormat.Dense, ConvAlgorithm.Direct, level) }));
        foreach (var (format, algorithm, simd) in variants)
        {
            var conv = new Conv2dLayer(WeightMatrix.FromDense(weight, outC, c * k * k, format), bias, c, (k, k), (s, s), (p, p), (d, d), algorithm) { Simd = simd };
            conv.Algorithm.Should().Be(algorithm);
            var model = new SparseModel(new FeatureShape(c, h, w), [conv]);
            model.Run(x, n).ShouldMatch(expected);
            // Again with one sample: the tap offsets depend on the batch and must not be reused from the last call.
            model.Run(x.AsSpan(0, c * h * w).ToArray(), 1).ShouldMatch(expected.AsSpan(0, model.OutputShape.Size).ToArray());
        }
    }

    [Theory]
    [InlineData(1, 15, 15)]   // 900 output columns: blocks of the operand, more parts than blocks (row groups within a block)
    [InlineData(2, 15, 15)]   // 256 columns, strided windows
    [InlineData(2, 5, 75)]    // stride 2 on lines of 38 outputs: the vector gathers of every other input, and their tails
    [InlineData(1, 20, 21)]   // 1,680 columns: the GEMM packs straight from the input (narrower operands are materialized first)
    [InlineData(1, 30, 31)]   // 3,720 columns; direct: 4,224 wide columns, more than a 1,024-column block per thread, through per-thread tiles
    public void Convolutions_read_their_input_block_by_block_in_every_format_width_and_thread_count(int stride, int h, int w)
    {
        // 24 channels × 3×3 = 216 operand rows: a CSR block spans 256 columns, the GEMM a depth block of 216 and
        // column panels with an edge; 40 filters = three 12-row panels and a partial fourth.
        const int n = 4, c = 24, outC = 40, k = 3, p = 1;
        float[] weight = Reference.Sparse(outC, c * k * k, 0.85, seed: 31);
        float[] bias = Reference.Random(outC, 32);
        float[] x = Reference.Random((long)n * c * h * w, 33);
        foreach (MatrixFormat format in new[] { MatrixFormat.Csr, MatrixFormat.CsrFloat16, MatrixFormat.CsrInt8, MatrixFormat.Dense, MatrixFormat.Bsr4x1 })
        {
            WeightMatrix matrix = WeightMatrix.FromDense(weight, outC, c * k * k, format);
            // The reference uses the values the format stores (fp16 and int8 round them).
            float[] expected = Conv(x, n, c, h, w, matrix.ToDense(), outC, k, k, stride, p, 1, bias);
            var algorithms = new List<ConvAlgorithm> { ConvAlgorithm.Im2Col };
            if (matrix is CsrMatrix or DenseMatrix) algorithms.Add(ConvAlgorithm.Direct);
            foreach (ConvAlgorithm algorithm in algorithms)
                foreach (SimdLevel level in Reference.Levels)
                {
                    var model = new SparseModel(new FeatureShape(c, h, w), [new Conv2dLayer(matrix, bias, c, (k, k), (stride, stride), (p, p), algorithm: algorithm) { Simd = level }]);
                    for (int threads = 1; threads <= 3; threads++)
                    {
                        var y = new float[n * model.OutputShape.Size];
                        Array.Fill(y, float.NaN);   // every output must be written
                        model.Run(x, y, n, threads);
                        y.ShouldMatch(expected);
                    }
                    // A smaller batch after a larger one reuses the buffers sized for the larger.
                    model.Run(x.AsSpan(0, c * h * w).ToArray(), 1, 2).ShouldMatch(expected.AsSpan(0, model.OutputShape.Size).ToArray());
                }
        }
    }

    [Fact]
    public void Direct_convolution_on_a_tiny_map_switches_to_im2col_for_large_batches_and_stays_exact()
    {
        // 3×3 padded on 2×2 maps: the padded plane is 4× the output. Batch 20 runs im2col, batch 1 the shifted product;
        // the buffers sized by the first serve the second.
        const int c = 9, outC = 13, h = 2, w = 2;
        float[] weight = Reference.Sparse(outC, c * 9, 0.8, seed: 41);
        float[] bias = Reference.Random(outC, 42);
        float[] x = Reference.Random(20L * c * h * w, 43);
        float[] expected = Conv(x, 20, c, h, w, weight, outC, 3, 3, 1, 1, 1, bias);
        foreach (SimdLevel level in Reference.Levels)
        {
            var conv = new Conv2dLayer(CsrMatrix.FromDense(weight, outC, c * 9), bias, c, (3, 3), padding: (1, 1)) { Simd = level };
            conv.Algorithm.Should().Be(ConvAlgorithm.Direct);
            var model = new SparseModel(new FeatureShape(c, h, w), [conv]);
            model.Run(x, 20).ShouldMatch(expected);
            model.Run(x.AsSpan(0, c * h * w).ToArray(), 1).ShouldMatch(expected.AsSpan(0, outC * h * w).ToArray());
            model.Run(x, 20).ShouldMatch(expected);
        }
    }

    [Theory]
    [InlineData(2, 4, 4, 2, 1, 1)]    // 2 groups, 4 → 4 channels, 3×3, stride 1
    [InlineData(3, 6, 6, 6, 2, 1)]    // depthwise, stride 2
    [InlineData(2, 8, 4, 4, 1, 2)]    // 4 groups of 2 → 1, dilated
    public void Grouped_and_depthwise_convolutions_match_one_reference_convolution_per_group(int n, int c, int outC, int groups, int s, int d)
    {
        const int h = 9, w = 8, k = 3, p = 1;
        int cg = c / groups, og = outC / groups;
        float[] weight = Reference.Sparse(outC, cg * k * k, 0.6, seed: 21);
        float[] bias = Reference.Random(outC, 22);
        float[] x = Reference.Random((long)n * c * h * w, 23);
        int ho = (h + 2 * p - d * (k - 1) - 1) / s + 1, wo = (w + 2 * p - d * (k - 1) - 1) / s + 1;
        var expected = new float[n * outC * ho * wo];
        for (int g = 0; g < groups; g++)
        {
            // The group's input channels, its filters and bias, convolved alone, placed into its output channels.
            var xs = new float[n * cg * h * w];
            for (int b = 0; b < n; b++) Array.Copy(x, (b * c + g * cg) * h * w, xs, b * cg * h * w, cg * h * w);
            float[] ys = Conv(xs, n, cg, h, w, weight[(g * og * cg * k * k)..((g + 1) * og * cg * k * k)], og, k, k, s, p, d, bias[(g * og)..((g + 1) * og)]);
            for (int b = 0; b < n; b++) Array.Copy(ys, b * og * ho * wo, expected, (b * outC + g * og) * ho * wo, og * ho * wo);
        }
        foreach (MatrixFormat format in new[] { MatrixFormat.Csr, MatrixFormat.Dense, MatrixFormat.CsrFloat16 })
        {
            var conv = new Conv2dLayer(WeightMatrix.FromDense(weight, outC, cg * k * k, format), bias, c, (k, k), (s, s), (p, p), (d, d), groups: groups);
            conv.Groups.Should().Be(groups);
            conv.Describe().Should().Contain($"groups {groups}");
            var model = new SparseModel(new FeatureShape(c, h, w), [conv]);
            model.Run(x, n).ShouldMatch(expected, format == MatrixFormat.CsrFloat16 ? 2e-3 : 1e-4);
            var loaded = SparseModel.Read(model.ToBytes());
            loaded.Run(x, n).Should().Equal(model.Run(x, n));
        }
        FluentActions.Invoking(() => new Conv2dLayer(WeightMatrix.FromDense(weight, outC, cg * k * k), bias, c, (k, k), groups: 5)).Should()
            .Throw<ArgumentOutOfRangeException>().WithParameterName("groups");
    }

    [Fact]
    public void Direct_convolution_is_chosen_for_filters_wider_than_1x1_at_any_stride_and_refused_where_it_cannot_run()
    {
        float[] weight = Reference.Sparse(4, 18, 0.8, seed: 2);
        new Conv2dLayer(CsrMatrix.FromDense(weight, 4, 18), null, 2, (3, 3), padding: (1, 1)).Algorithm.Should().Be(ConvAlgorithm.Direct);
        new Conv2dLayer(CsrMatrix.FromDense(weight, 4, 18), null, 2, (3, 3), (2, 2)).Algorithm.Should().Be(ConvAlgorithm.Direct);
        new Conv2dLayer(new DenseMatrix(weight, 4, 18), null, 2, (3, 3)).Algorithm.Should().Be(ConvAlgorithm.Direct);
        new Conv2dLayer(new DenseMatrix(weight, 4, 18), null, 2, (3, 3), (2, 2)).Algorithm.Should().Be(ConvAlgorithm.Direct);
        new Conv2dLayer(CsrMatrix.FromDense(weight, 8, 9), null, 9, (1, 1), (2, 2)).Algorithm.Should().Be(ConvAlgorithm.Im2Col);
        new Conv2dLayer(CsrMatrix.FromDense(weight, 6, 12), null, 12, (1, 1)).Algorithm.Should().Be(ConvAlgorithm.Im2Col);
        new Conv2dLayer(new DenseMatrix(weight, 6, 12), null, 12, (1, 1)).Algorithm.Should().Be(ConvAlgorithm.Im2Col);
        // Dense groups keep im2col (direct was measured on single-group layers); CSR groups run direct.
        new Conv2dLayer(new DenseMatrix(weight, 4, 18), null, 4, (3, 3), groups: 2).Algorithm.Should().Be(ConvAlgorithm.Im2Col);
        new Conv2dLayer(CsrMatrix.FromDense(weight, 4, 18), null, 4, (3, 3), groups: 2).Algorithm.Should().Be(ConvAlgorithm.Direct);

        new Conv2dLayer(new DenseMatrix(weight, 4, 18), null, 2, (3, 3), algorithm: ConvAlgorithm.Direct).Algorithm.Should().Be(ConvAlgorithm.Direct);
        var blocks = () => new Conv2dLayer(BsrMatrix.FromDense(weight, 4, 18, (4, 1)), null, 2, (3, 3), algorithm: ConvAlgorithm.Direct);
        blocks.Should().Throw<ArgumentException>().Which.ParamName.Should().Be("algorithm");
        new Conv2dLayer(CsrMatrix.FromDense(weight, 4, 18), null, 2, (3, 3), (2, 2), algorithm: ConvAlgorithm.Direct).Algorithm.Should().Be(ConvAlgorithm.Direct);
    }

    [Fact]
    public void FromDense_stores_stride_1_filters_as_csr_up_to_half_density_and_strided_ones_by_the_general_rule()
    {
        // 18 weights per filter, 4 filters; 40 of 72 zero (density 0.44): between the general limit (0.40) and the
        // direct-convolution limit (0.5).
        float[] filters = new float[72];
        for (int i = 0; i < filters.Length; i++) filters[i] = i % 9 < 5 ? 0f : i + 1f;
        long nonZeros = filters.Count(v => v != 0);
        nonZeros.Should().Be(32);

        var direct = Conv2dLayer.FromDense(filters, 4, null, 2, (3, 3), padding: (1, 1));
        direct.Weight.Format.Should().Be(MatrixFormat.Csr);
        direct.Algorithm.Should().Be(ConvAlgorithm.Direct);

        // Strided filters keep the general format rule (the direct limit was measured at stride 1), and run direct too.
        var strided = Conv2dLayer.FromDense(filters, 4, null, 2, (3, 3), (2, 2));
        strided.Weight.Format.Should().Be(MatrixFormat.Dense);
        strided.Algorithm.Should().Be(ConvAlgorithm.Direct);

        float[] denser = filters.Select((v, i) => v == 0 && i % 4 == 0 ? 1f : v).ToArray();
        denser.Count(v => v != 0).Should().BeGreaterThan(36);
        Conv2dLayer.FromDense(denser, 4, null, 2, (3, 3)).Weight.Format.Should().Be(MatrixFormat.Dense);
        Conv2dLayer.FromDense(denser, 4, null, 2, (3, 3), format: MatrixFormat.Csr).Algorithm.Should().Be(ConvAlgorithm.Direct);

        var ragged = () => Conv2dLayer.FromDense(new float[70], 4, null, 2, (3, 3));
        ragged.Should().Throw<ArgumentException>().Which.ParamName.Should().Be("filters");
    }

    [Fact]
    public void Max_and_average_pooling_match_pytorch_semantics_on_a_hand_computed_case()
    {
        // One 1×4×4 plane, 3×3 windows with stride 2 and padding 1 → 2×2 outputs.
        float[] x = Enumerable.Range(1, 16).Select(v => (float)v).ToArray();
        var shape = new FeatureShape(1, 4, 4);
        new SparseModel(shape, [new Pool2dLayer(PoolKind.Max, (3, 3), (2, 2), (1, 1))]).Run(x).Should().Equal(6, 8, 14, 16);
        // count_include_pad: the top-left window covers 1,2,5,6 plus 5 padding cells → 14 / 9.
        new SparseModel(shape, [new Pool2dLayer(PoolKind.Average, (3, 3), (2, 2), (1, 1))]).Run(x)[0].Should().BeApproximately(14f / 9, 1e-6f);
        new SparseModel(shape, [new Pool2dLayer(PoolKind.Average, (3, 3), (2, 2), (1, 1), countIncludePad: false)]).Run(x)[0].Should().BeApproximately(14f / 4, 1e-6f);
    }

    [Theory]
    [InlineData(2, 2, 2, 2, 0, 0, false, 9, 8)]     // 2×2/2, odd height: the last input row is dropped
    [InlineData(2, 2, 2, 2, 0, 0, false, 6, 28)]    // 2×2/2 on 28 columns: four outputs at a time, then the tail
    [InlineData(3, 3, 2, 2, 1, 1, false, 5, 40)]    // 3×3/2 padded: the first output by the edge, then four at a time
    [InlineData(3, 3, 2, 2, 0, 0, true, 4, 19)]     // 3×3/2 unpadded, ceil mode: the last window is cut by the edge
    [InlineData(3, 3, 2, 2, 1, 1, false, 33, 21)]   // resnet's stem pool, widths past one vector
    [InlineData(3, 2, 1, 2, 1, 1, true, 7, 40)]     // uneven kernel and stride, ceil mode
    [InlineData(5, 5, 3, 3, 2, 2, true, 11, 12)]
    [InlineData(1, 1, 1, 1, 0, 0, false, 3, 17)]
    public void Max_pooling_equals_the_window_maximum_with_nans_propagated(int kh, int kw, int sh, int sw, int ph, int pw, bool ceil, int h, int w)
    {
        const int planes = 3;   // channels × batch (2 × … as [C, N, H, W] planes)
        var rng = new Random(kh * 131 + w);
        float[] x = Enumerable.Range(0, planes * h * w).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        x[h * w + w + 1] = float.NaN;   // one NaN in the second plane
        var layer = new Pool2dLayer(PoolKind.Max, (kh, kw), (sh, sw), (ph, pw), ceilMode: ceil);
        FeatureShape output = layer.OutputShape(new FeatureShape(planes, h, w));
        float[] y = new SparseModel(new FeatureShape(planes, h, w), [layer]).Run(x);
        int nans = 0;
        for (int p = 0; p < planes; p++)
            for (int oy = 0; oy < output.Height; oy++)
                for (int ox = 0; ox < output.Width; ox++)
                {
                    float expected = float.NegativeInfinity;
                    for (int iy = Math.Max(0, oy * sh - ph); iy < Math.Min(h, oy * sh - ph + kh); iy++)
                        for (int ix = Math.Max(0, ox * sw - pw); ix < Math.Min(w, ox * sw - pw + kw); ix++)
                        {
                            float v = x[(p * h + iy) * w + ix];
                            if (float.IsNaN(v) || float.IsNaN(expected)) expected = float.NaN;
                            else expected = Math.Max(expected, v);
                        }
                    float actual = y[(p * output.Height + oy) * output.Width + ox];
                    if (float.IsNaN(expected)) { actual.Should().Be(float.NaN, $"plane {p} ({oy}, {ox}) sees the NaN"); nans++; }
                    else actual.Should().Be(expected, $"plane {p} ({oy}, {ox})");
                }
        nans.Should().BeGreaterThan(0);
    }

    [Fact]
    public void Flatten_orders_features_channel_then_row_then_column_for_every_sample()
    {
        // Two samples of 2×1×2: flatten then identity-like linear picks feature 3 (channel 1, column 1).
        float[] x = [1, 2, 3, 4, 10, 20, 30, 40];
        var pick = new float[4];
        pick[3] = 1;
        var model = new SparseModel(new FeatureShape(2, 1, 2), [new FlattenLayer(), new LinearLayer(new DenseMatrix(pick, 1, 4), null)]);
        model.Run(x, 2).Should().Equal(4, 40);
    }

    [Fact]
    public void A_batch_gives_the_same_outputs_as_one_sample_at_a_time()
    {
        var model = SmallCnn();
        float[] x = Reference.Random(5 * 1 * 12 * 12, 3);
        float[] batched = model.Run(x, 5);
        for (int n = 0; n < 5; n++)
            model.Run(x.AsSpan(n * 144, 144).ToArray()).ShouldMatch(batched.AsSpan(n * 10, 10).ToArray(), 1e-5);
    }

    [Fact]
    public void Global_average_pooling_takes_each_planes_mean()
    {
        // Two samples × two channels of 2×2: [C, N, H, W] inside, [N, C, H, W] in and out.
        float[] x = [1, 2, 3, 4, /**/ 10, 20, 30, 40, /**/ 5, 5, 5, 5, /**/ 0, 0, 0, 8];
        new SparseModel(new FeatureShape(2, 2, 2), [new GlobalAveragePoolLayer()]).Run(x, 2).Should().Equal(2.5f, 25f, 5f, 2f);
    }

    [Theory]
    [InlineData(7, 7)]    // 49 values: six vectors of eight, then one
    [InlineData(3, 5)]    // 15: one vector, then four, then three
    [InlineData(1, 7)]    // 7: no vector
    public void Global_average_pooling_of_larger_planes_sums_every_value_in_double(int h, int w)
    {
        const int channels = 3, batch = 2;
        // Large values with small ones: a float sum would lose the small ones.
        float[] x = Enumerable.Range(0, channels * batch * h * w).Select(i => i % 5 == 0 ? 1e7f : (i % 7) * 0.25f - 0.5f).ToArray();
        float[] y = new SparseModel(new FeatureShape(channels, h, w), [new GlobalAveragePoolLayer()]).Run(x, batch);
        for (int p = 0; p < channels * batch; p++)
            y[p].Should().Be((float)(x.Skip(p * h * w).Take(h * w).Sum(v => (double)v) / (h * w)), $"plane {p}");
    }

    [Fact]
    public void Alternating_batch_sizes_reuse_the_buffers_and_give_the_same_outputs()
    {
        var model = SmallCnn();
        float[] x = Reference.Random(7 * 144, 11);
        float[] seven = model.Run(x, 7);
        float[] one = model.Run(x.AsSpan(0, 144).ToArray());
        model.Run(x, 7).Should().Equal(seven);
        model.Run(x.AsSpan(0, 144).ToArray()).Should().Equal(one);
        float[] three = model.Run(x.AsSpan(0, 3 * 144).ToArray(), 3);
        three.ShouldMatch(seven.AsSpan(0, 30).ToArray(), 1e-5);
    }

    [Fact]
    public void Activations_compute_their_functions()
    {
        float[] x = [-2, -0.5f, 0, 1.5f];
        Run(ActivationKind.ReLU).Should().Equal(0, 0, 0, 1.5f);
        Run(ActivationKind.LeakyReLU, 0.1f).Should().Equal(-0.2f, -0.05f, 0, 1.5f);
        Run(ActivationKind.Tanh).ShouldMatch(x.Select(v => MathF.Tanh(v)).ToArray(), 1e-6);
        Run(ActivationKind.Sigmoid).ShouldMatch(x.Select(v => 1 / (1 + MathF.Exp(-v))).ToArray(), 1e-6);

        float[] Run(ActivationKind kind, float slope = 0.01f) => new SparseModel(new FeatureShape(4), [new ActivationLayer(kind, slope)]).Run(x);
    }

    [Theory]
    [InlineData(ActivationKind.ReLU)]
    [InlineData(ActivationKind.ReLU6)]
    [InlineData(ActivationKind.LeakyReLU)]
    public void Clamping_activations_pass_nan_through_in_the_vector_body_and_the_scalar_tail(ActivationKind kind)
    {
        // 11 values: eight in a 256-bit vector, three in the scalar tail; a NaN in each part, as PyTorch's relu,
        // relu6 (hardtanh) and leaky_relu pass it through.
        float[] x = [-1, 2, float.NaN, 7, -3, 0.5f, 8, -0.25f, 3, float.NaN, -2];
        float[] y = new SparseModel(new FeatureShape(11), [new ActivationLayer(kind, 0.1f)]).Run(x);
        float[] expected = x.Select(v => kind switch
        {
            ActivationKind.ReLU => v < 0 ? 0 : v,
            ActivationKind.ReLU6 => v < 0 ? 0 : v > 6 ? 6 : v,
            _ => v < 0 ? 0.1f * v : v,
        }).ToArray();
        y.Should().Equal(expected);
        float.IsNaN(y[2]).Should().BeTrue();
        float.IsNaN(y[9]).Should().BeTrue();
    }

    [Fact]
    public void A_chain_that_does_not_fit_is_refused_naming_the_layer()
    {
        var linear = new LinearLayer(new DenseMatrix(new float[12], 3, 4), null);
        Action noFlatten = () => _ = new SparseModel(new FeatureShape(1, 2, 2), [linear]);
        noFlatten.Should().Throw<ArgumentException>().WithMessage("Layer 0 (Linear 4→3*needs a vector of 4 features*Add a Flatten*");
        Action tooSmall = () => _ = new SparseModel(new FeatureShape(1, 2, 2), [new Pool2dLayer(PoolKind.Max, (3, 3))]);
        tooSmall.Should().Throw<ArgumentException>().WithMessage("*does not fit*");
    }

    internal static SparseModel SmallCnn() => new(new FeatureShape(1, 12, 12),
    [
        new Conv2dLayer(CsrMatrix.FromDense(Reference.Sparse(4, 9, 0.5, 1), 4, 9), Reference.Random(4, 2), 1, (3, 3), padding: (1, 1)),
        new ActivationLayer(ActivationKind.ReLU),
        new Pool2dLayer(PoolKind.Max, (2, 2)),
        new Conv2dLayer(CsrMatrix.FromDense(Reference.Sparse(6, 36, 0.8, 3), 6, 36), null, 4, (3, 3), (2, 2)),
        new ActivationLayer(ActivationKind.LeakyReLU, 0.05f),
        new Pool2dLayer(PoolKind.Average, (2, 2), (1, 1)),
        new FlattenLayer(),
        new LinearLayer(CsrMatrix.FromDense(Reference.Sparse(10, 6, 0.3, 4), 10, 6), Reference.Random(10, 5)),
    ]);
}
