using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Sequences;

namespace Pruning.Sparse.Tests.Sequences;

public class TransformerModelTests
{
    private const int Vocabulary = 23, Context = 40;

    /// <summary>
    /// Two blocks of d = 12 (one pre-LN with exact GELU, one post-LN with tanh GELU), MLP 20, a final norm, an untied
    /// decoder with bias (or tied, without); projections sparse in <paramref name="format"/>.
    /// </summary>
    internal static TransformerModel Small(int seed = 1, int heads = 3, bool tied = false, MatrixFormat format = MatrixFormat.Auto, int dimension = 12)
    {
        int d = dimension, hidden = 20;
        WeightMatrix M(int rows, int cols, double sparsity, int s, MatrixFormat f = MatrixFormat.Auto)
        {
            float[] dense = Reference.Sparse(rows, cols, sparsity, s);
            if (f == MatrixFormat.Nm2of4)   // keep the two largest of every four
                for (int g = 0; g < dense.Length; g += 4)
                    foreach (int i in Enumerable.Range(g, 4).OrderBy(i => Math.Abs(dense[i])).Take(2)) dense[i] = 0;
            return WeightMatrix.FromDense(dense, rows, cols, f);
        }
        LinearLayer Linear(int rows, int cols, int s) => new(M(rows, cols, 0.5, s, format), Reference.Random(rows, s + 1).Select(v => v * 0.2f).ToArray());
        LayerNorm Norm(int s) => new(d, Reference.Random(d, s).Select(v => 1 + 0.3f * v).ToArray(), Reference.Random(d, s + 1).Select(v => 0.1f * v).ToArray());
        TransformerBlock Block(int s, bool first, GeluApproximation gelu) =>
            new(Norm(s), Linear(3 * d, d, s + 2), Linear(d, d, s + 4), heads, Norm(s + 6), Linear(hidden, d, s + 8), Linear(d, hidden, s + 10), gelu, first);
        var tokens = new EmbeddingLayer(M(Vocabulary, d, 0.3, seed));
        LinearLayer decoder = tied ? new LinearLayer(tokens.Table, default) : new LinearLayer(M(Vocabulary, d, 0.6, seed + 1), Reference.Random(Vocabulary, seed + 2));
        return new TransformerModel(tokens, new EmbeddingLayer(M(Context, d, 0, seed + 3)),
            [Block(seed + 10, true, GeluApproximation.None), Block(seed + 30, false, GeluApproximation.Tanh)], Norm(seed + 50), decoder);
    }

    /// <summary>The model in double precision, every sequence recomputed from position 0, weights read back from their stored form.</summary>
    internal static double[] ReferenceRun(TransformerModel model, int[] tokens, int batch, int steps)
    {
        int d = model.Dimension, outputs = model.Outputs;
        var logits = new double[batch * steps * outputs];
        for (int n = 0; n < batch; n++)
        {
            // x[t][e]: the residual stream of every position.
            var x = new double[steps][];
            for (int t = 0; t < steps; t++)
            {
                float[] token = Row(model.Tokens.Table, tokens[n * steps + t]), position = Row(model.Positions.Table, t);
                x[t] = Enumerable.Range(0, d).Select(e => (double)token[e] + position[e]).ToArray();
            }
            foreach (TransformerBlock block in model.Blocks)
            {
                double[][] a = block.NormFirst ? x.Select(v => Norm(block.AttentionNorm, v)).ToArray() : x;
                double[][] qkv = a.Select(v => Linear(block.QueryKeyValue, v)).ToArray();
                int size = d / block.Heads;
                var attended = new double[steps][];
                for (int t = 0; t < steps; t++)
                {
                    attended[t] = new double[d];
                    for (int h = 0; h < block.Heads; h++)
                    {
                        double[] scores = Enumerable.Range(0, t + 1).Select(j =>
                            Enumerable.Range(0, size).Sum(i => qkv[t][h * size + i] * qkv[j][d + h * size + i]) / Math.Sqrt(size)).ToArray();
                        double max = scores.Max();
                        double[] p = scores.Select(s => Math.Exp(s - max)).ToArray();
                        double total = p.Sum();
                        for (int i = 0; i < size; i++)
                            attended[t][h * size + i] = Enumerable.Range(0, t + 1).Sum(j => p[j] / total * qkv[j][2 * d + h * size + i]);
                    }
                }
                for (int t = 0; t < steps; t++)
                {
                    double[] o = Linear(block.AttentionOutput, attended[t]);
                    double[] sum = x[t].Select((v, e) => v + o[e]).ToArray();
                    x[t] = block.NormFirst ? sum : Norm(block.AttentionNorm, sum);
                    double[] u = Linear(block.MlpUp, block.NormFirst ? Norm(block.MlpNorm, x[t]) : x[t]).Select(v => Gelu(v, block.Gelu)).ToArray();
                    double[] down = Linear(block.MlpDown, u);
                    sum = x[t].Select((v, e) => v + down[e]).ToArray();
                    x[t] = block.NormFirst ? sum : Norm(block.MlpNorm, sum);
                }
            }
            for (int t = 0; t < steps; t++)
            {
                double[] h = model.FinalNorm is null ? x[t] : Norm(model.FinalNorm, x[t]);
                Linear(model.Decoder, h).CopyTo(logits, (n * steps + t) * outputs);
            }
        }
        return logits;
    }

    private static float[] Row(WeightMatrix m, int row)
    {
        var values = new float[m.Cols];
        m.ReadRow(row, values);
        return values;
    }

    private static double[] Linear(LinearLayer layer, double[] x)
    {
        float[] w = layer.Weight.ToDense();
        int cols = layer.Weight.Cols;
        return Enumerable.Range(0, layer.Weight.Rows).Select(r =>
            (layer.Bias.IsEmpty ? 0 : layer.Bias[r]) + Enumerable.Range(0, cols).Sum(k => (double)w[r * cols + k] * x[k])).ToArray();
    }

    internal static double[] Norm(LayerNorm norm, double[] x)
    {
        double mean = x.Average(), variance = x.Sum(v => (v - mean) * (v - mean)) / x.Length;
        return x.Select((v, e) => (v - mean) / Math.Sqrt(variance + norm.Epsilon) * norm.Weight[e] + norm.Bias[e]).ToArray();
    }

    /// <summary>GELU in double: the exact form from erf's Taylor series (its Taylor series where it converges well, |x/√2| ≤ 3, a continued fraction for erfc beyond), or the tanh form.</summary>
    internal static double Gelu(double x, GeluApproximation approximation)
    {
        if (approximation == GeluApproximation.Tanh) return 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
        return 0.5 * x * (1 + Erf(x / Math.Sqrt(2)));
    }

    private static double Erf(double z)
    {
        if (Math.Abs(z) > 3)
        {
            // erfc(|z|) = e^(−z²) / (√π · (|z| + (1/2)/(|z| + 1/(|z| + (3/2)/(|z| + …))))), evaluated from the tail.
            double a = Math.Abs(z), f = a;
            for (int k = 80; k >= 1; k--) f = a + k / 2.0 / f;
            return Math.Sign(z) * (1 - Math.Exp(-a * a) / (Math.Sqrt(Math.PI) * f));
        }
        double term = z, sum = z;
        for (int n = 1; n < 200; n++)
        {
            term *= -z * z / n;
            sum += term / (2 * n + 1);
        }
        return 2 / Math.Sqrt(Math.PI) * sum;
    }

    private static void ShouldMatchRange(float[] actual, double[] expected, double relative = 1e-4)
    {
        actual.Should().HaveCount(expected.Length);
        double range = expected.Max() - expected.Min();
        for (int i = 0; i < actual.Length; i++)
            Math.Abs(actual[i] - expected[i]).Should().BeLessThanOrEqualTo(relative * range, $"logit {i}: {actual[i]} vs {expected[i]}");
    }

    private static int[] Tokens(int count, int seed) => Enumerable.Range(0, count).Select(i => (i * 7 + seed * 5 + 3) % Vocabulary).ToArray();

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(1, 37, 3)]
    [InlineData(2, 37, 3)]
    [InlineData(3, 5, 1)]
    [InlineData(2, 9, 4)]
    [InlineData(2, 9, 12)]
    public void A_run_matches_a_double_precision_reference(int batch, int steps, int heads)
    {
        TransformerModel model = Small(seed: 3, heads);
        int[] tokens = Tokens(batch * steps, 1);
        foreach (int threads in new[] { 1, 2, 3 })
            ShouldMatchRange(model.Run(tokens, batch, steps, threads: threads), ReferenceRun(model, tokens, batch, steps));
    }

    [Theory]
    [InlineData(MatrixFormat.Dense)]
    [InlineData(MatrixFormat.Csr)]
    [InlineData(MatrixFormat.CsrFloat16)]
    [InlineData(MatrixFormat.CsrInt8)]
    [InlineData(MatrixFormat.Bsr4x1)]
    [InlineData(MatrixFormat.Nm2of4)]
    public void Every_weight_format_runs_the_weights_it_stores(MatrixFormat format)
    {
        TransformerModel model = Small(seed: 7, heads: 2, format: format, dimension: 16);
        model.Blocks[0].QueryKeyValue.Weight.Format.Should().Be(format);
        int[] tokens = Tokens(2 * 11, 2);
        ShouldMatchRange(model.Run(tokens, 2, 11, threads: 2), ReferenceRun(model, tokens, 2, 11));
    }

    [Fact]
    public void A_tied_decoder_reuses_the_token_table()
    {
        TransformerModel model = Small(seed: 5, tied: true);
        model.Tied.Should().BeTrue();
        model.StoredParameters.Should().Be(Small(seed: 5, tied: true).StoredParameters);
        int[] tokens = Tokens(6, 3);
        ShouldMatchRange(model.Run(tokens, 1, 6), ReferenceRun(model, tokens, 1, 6));
    }

    [Fact]
    public void A_carried_cache_equals_a_full_recomputation()
    {
        TransformerModel model = Small(seed: 9);
        const int batch = 2, steps = 37;
        int[] tokens = Tokens(batch * steps, 4);
        float[] whole = model.Run(tokens, batch, steps);
        // The same tokens fed as 5, then 1, 1, then the rest, with one cache.
        AttentionCache cache = model.NewCache(batch);
        var pieced = new float[whole.Length];
        int at = 0;
        foreach (int length in new[] { 5, 1, 1, steps - 7 })
        {
            int[] piece = new int[batch * length];
            for (int n = 0; n < batch; n++) Array.Copy(tokens, n * steps + at, piece, n * length, length);
            float[] logits = model.Run(piece, batch, length, cache);
            for (int n = 0; n < batch; n++)
                Array.Copy(logits, n * length * model.Outputs, pieced, (n * steps + at) * model.Outputs, length * model.Outputs);
            at += length;
            cache.Length.Should().Be(at);
        }
        pieced.ShouldMatch(whole, 1e-5);
        // A future token never changes earlier logits (the mask is causal).
        int[] changed = (int[])tokens.Clone();
        changed[20] = (changed[20] + 1) % Vocabulary;
        float[] other = model.Run(changed, batch, steps);
        other.AsSpan(0, 20 * model.Outputs).ToArray().Should().Equal(whole.AsSpan(0, 20 * model.Outputs).ToArray());
        other.AsSpan(20 * model.Outputs, model.Outputs).ToArray().Should().NotEqual(whole.AsSpan(20 * model.Outputs, model.Outputs).ToArray());
        // Truncate goes back: the last 7 positions fed again give the same logits.
        cache.Truncate(steps - 7);
        int[] tail = [.. tokens[(steps - 7)..steps], .. tokens[(2 * steps - 7)..]];
        float[] again = model.Run(tail, batch, 7, cache);
        for (int n = 0; n < batch; n++)
            again.AsSpan(n * 7 * model.Outputs, 7 * model.Outputs).ToArray().ShouldMatch(whole.AsSpan((n * steps + steps - 7) * model.Outputs, 7 * model.Outputs).ToArray(), 1e-5);
        FluentActions.Invoking(() => cache.Truncate(steps + 1)).Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("length");
        // Step continues a cache; Reset starts over.
        var step = new float[batch * model.Outputs];
        model.Step([1, 2], step, cache);
        cache.Length.Should().Be(steps + 1);
        cache.Reset();
        model.Run(tokens, batch, steps, cache).ShouldMatch(whole, 1e-6);
    }

    [Fact]
    public void LayerNorm_and_gelu_match_their_double_references()
    {
        var norm = new LayerNorm(5, [1, 2, 0.5f, -1, 3], [0.1f, 0, -0.2f, 0.3f, 1], 1e-3f);
        // Two columns, one with a large mean (E[x²] − mean² would cancel there).
        double[][] columns = [[0.5, -1, 2, 3, 0], [1000.25, 1000.5, 999.75, 1000, 1001]];
        float[] x = new float[10];
        for (int e = 0; e < 5; e++) { x[e * 2] = (float)columns[0][e]; x[e * 2 + 1] = (float)columns[1][e]; }
        var y = new float[10];
        norm.Forward(x, y, 2, new float[4]);
        for (int c = 0; c < 2; c++)
        {
            double[] expected = Norm(norm, columns[c].Select(v => (double)(float)v).ToArray());
            for (int e = 0; e < 5; e++) y[e * 2 + c].Should().BeApproximately((float)expected[e], 2e-4f);
        }
        float[] inputs = [-8, -5, -3.5f, -1, -0.25f, 0, 1e-4f, 0.5f, 1.25f, 3, 7, float.NaN];
        foreach (GeluApproximation kind in Enum.GetValues<GeluApproximation>())
        {
            float[] values = (float[])inputs.Clone();
            Pruning.Sparse.Sequences.Gelu.Apply(values, kind);
            for (int i = 0; i < inputs.Length - 1; i++)
            {
                double expected = Gelu(inputs[i], kind);
                values[i].Should().BeApproximately((float)expected, (float)(1e-6 * Math.Max(1, Math.Abs(expected))) + 1e-9f, $"{kind} GELU({inputs[i]})");
            }
            float.IsNaN(values[^1]).Should().BeTrue();
        }
        // The exact and tanh forms differ measurably (a test that mixed them up would fail).
        Math.Abs(Gelu(-3.5, GeluApproximation.None) - Gelu(-3.5, GeluApproximation.Tanh)).Should().BeGreaterThan(1e-5);
    }

    [Fact]
    public void Bad_tokens_contexts_and_caches_are_refused_by_name()
    {
        TransformerModel model = Small();
        FluentActions.Invoking(() => model.Run([0, Vocabulary], 1, 2)).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*Token 23 (sequence 0, step 1)*").Which.ParamName.Should().Be("tokens");
        FluentActions.Invoking(() => model.Run(new int[Context + 1], 1, Context + 1)).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*context of 40*").Which.ParamName.Should().Be("steps");
        AttentionCache cache = model.NewCache(1);
        model.Run(new int[Context - 1], 1, Context - 1, cache);
        model.Step([0], new float[Vocabulary], cache);
        FluentActions.Invoking(() => model.Step([0], new float[Vocabulary], cache)).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*40 cached and 1 new*");
        FluentActions.Invoking(() => model.Run([0, 1], 2, 1, model.NewCache(3))).Should().Throw<ArgumentException>().Which.ParamName.Should().Be("cache");
        FluentActions.Invoking(() => model.Run([0, 1], 2, 1, Small(heads: 4).NewCache(2))).Should().Throw<ArgumentException>().Which.ParamName.Should().Be("cache");
        FluentActions.Invoking(() => Small(heads: 5)).Should().Throw<ArgumentException>().WithMessage("*5 heads do not divide*").Which.ParamName.Should().Be("heads");
        FluentActions.Invoking(() => new LayerNorm(3, [1, 2], default)).Should().Throw<ArgumentException>().Which.ParamName.Should().Be("weight");
        FluentActions.Invoking(() => new LayerNorm(3, default, default, float.NaN)).Should().Throw<ArgumentException>().Which.ParamName.Should().Be("epsilon");
    }

    [Fact]
    public void The_memory_budget_bounds_runs_and_caches()
    {
        TransformerModel model = Small();
        long one = model.BufferBytes(1, 1), many = model.BufferBytes(4, 10);
        var tight = new TransformerModel(model.Tokens, model.Positions, model.Blocks, model.FinalNorm, model.Decoder, new SparseModelOptions { MaxBufferBytes = many });
        tight.Run(new int[40], 4, 10).Should().HaveCount(4 * 10 * Vocabulary);
        FluentActions.Invoking(() => tight.Run(new int[44], 4, 11)).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*4 sequences of 11 steps need*budget*");
        FluentActions.Invoking(() => tight.NewCache(1000)).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*cache for 1000 sequences*budget*");
        FluentActions.Invoking(() => new TransformerModel(model.Tokens, model.Positions, model.Blocks, model.FinalNorm, model.Decoder, new SparseModelOptions { MaxBufferBytes = one }))
            .Should().Throw<ArgumentException>().Which.ParamName.Should().Be("options");
    }
}
