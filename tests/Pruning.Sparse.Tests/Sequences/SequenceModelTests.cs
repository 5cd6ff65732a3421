using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Sequences;

namespace Pruning.Sparse.Tests.Sequences;

public class SequenceModelTests
{
    /// <summary>Embedding 20×6 → LSTM 6→8 → GRU-free stack of two LSTMs → decoder 8→20, some weights CSR.</summary>
    internal static SequenceModel Lstm(int seed = 1, bool gru = false)
    {
        WeightMatrix M(int rows, int cols, double sparsity, int s) => WeightMatrix.FromDense(Reference.Sparse(rows, cols, sparsity, s), rows, cols);
        int gates = gru ? 3 : 4;
        RecurrentLayer Layer(int input, int s) => gru
            ? new GruLayer(M(gates * 8, input, 0.7, s), M(gates * 8, 8, 0.2, s + 1), Reference.Random(gates * 8, s + 2), Reference.Random(gates * 8, s + 3))
            : new LstmLayer(M(gates * 8, input, 0.7, s), M(gates * 8, 8, 0.2, s + 1), Reference.Random(gates * 8, s + 2), Reference.Random(gates * 8, s + 3));
        return new SequenceModel(new EmbeddingLayer(M(20, 6, 0.8, seed)), [Layer(6, seed + 10), Layer(8, seed + 20)],
            new LinearLayer(M(20, 8, 0.5, seed + 30), Reference.Random(20, seed + 31)));
    }

    /// <summary>A plain double-precision LSTM/GRU language model over the same weights, one token at a time.</summary>
    private static float[] ReferenceRun(SequenceModel model, int[] tokens, int batch, int steps)
    {
        var logits = new float[batch * steps * model.Outputs];
        for (int n = 0; n < batch; n++)
        {
            var h = model.Layers.Select(l => new double[l.HiddenSize]).ToArray();
            var c = model.Layers.Select(l => new double[l.HiddenSize]).ToArray();
            for (int t = 0; t < steps; t++)
            {
                float[] row = new float[model.Embedding.Dimension];
                model.Embedding.Table.ReadRow(tokens[n * steps + t], row);
                double[] x = row.Select(v => (double)v).ToArray();
                for (int l = 0; l < model.Layers.Count; l++)
                {
                    RecurrentLayer layer = model.Layers[l];
                    float[] ih = layer.WeightIh.ToDense(), hh = layer.WeightHh.ToDense();
                    int size = layer.HiddenSize;
                    double Pre(int r, bool withHh) => (layer.BiasIh.Length > 0 ? layer.BiasIh[r] : 0) + Enumerable.Range(0, x.Length).Sum(k => ih[r * x.Length + k] * x[k])
                        + (withHh ? Recurrent(r) : 0);
                    double Recurrent(int r) => (layer.BiasHh.Length > 0 ? layer.BiasHh[r] : 0) + Enumerable.Range(0, size).Sum(k => hh[r * size + k] * h[l][k]);
                    static double S(double v) => 1 / (1 + Math.Exp(-v));
                    var next = new double[size];
                    for (int j = 0; j < size; j++)
                    {
                        if (layer is LstmLayer)
                        {
                            double i = S(Pre(j, true)), f = S(Pre(size + j, true)), g = Math.Tanh(Pre(2 * size + j, true)), o = S(Pre(3 * size + j, true));
                            c[l][j] = f * c[l][j] + i * g;
                            next[j] = o * Math.Tanh(c[l][j]);
                        }
                        else
                        {
                            double r = S(Pre(j, true)), z = S(Pre(size + j, true));
                            double candidate = Math.Tanh(Pre(2 * size + j, false) + r * Recurrent(2 * size + j));
                            next[j] = (1 - z) * candidate + z * h[l][j];
                        }
                    }
                    h[l] = next;
                    x = next;
                }
                float[] w = model.Decoder.Weight.ToDense();
                for (int v = 0; v < model.Outputs; v++)
                    logits[(n * steps + t) * model.Outputs + v] = (float)(model.Decoder.Bias[v] + Enumerable.Range(0, x.Length).Sum(k => w[v * x.Length + k] * x[k]));
            }
        }
        return logits;
    }

    [Theory]
    [InlineData(false, 1, 1)]
    [InlineData(false, 3, 7)]
    [InlineData(true, 1, 1)]
    [InlineData(true, 3, 7)]
    public void A_run_matches_a_double_precision_reference(bool gru, int batch, int steps)
    {
        SequenceModel model = Lstm(seed: 3, gru);
        int[] tokens = Enumerable.Range(0, batch * steps).Select(i => (i * 7 + 3) % 20).ToArray();
        model.Run(tokens, batch, steps).ShouldMatch(ReferenceRun(model, tokens, batch, steps), 1e-5);
    }

    [Fact]
    public void Stepping_with_a_state_equals_one_run_and_the_state_carries_between_runs()
    {
        SequenceModel model = Lstm(seed: 5);
        int[] tokens = Enumerable.Range(0, 2 * 9).Select(i => (i * 11 + 1) % 20).ToArray();
        float[] whole = model.Run(tokens, 2, 9);
        RecurrentState state = model.NewState(2);
        var stepped = new float[whole.Length];
        var logits = new float[2 * model.Outputs];
        for (int t = 0; t < 9; t++)
        {
            model.Step([tokens[t], tokens[9 + t]], logits, state);
            for (int n = 0; n < 2; n++) logits.AsSpan(n * model.Outputs, model.Outputs).CopyTo(stepped.AsSpan((n * 9 + t) * model.Outputs));
        }
        stepped.ShouldMatch(whole, 1e-5);

        // Two runs of 4 and 5 steps with one state give the same last logits as one run of 9.
        RecurrentState carried = model.NewState(1);
        int[] first = tokens[..9];
        model.Run(first[..4], 1, 4, carried);
        float[] rest = model.Run(first[4..], 1, 5, carried);
        rest.AsSpan(4 * model.Outputs).ToArray().ShouldMatch(whole.AsSpan(8 * model.Outputs, model.Outputs).ToArray(), 1e-5);
    }

    [Fact]
    public void Bad_tokens_shapes_and_states_are_refused_by_name()
    {
        SequenceModel model = Lstm();
        FluentActions.Invoking(() => model.Run([0, 20], 1, 2)).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*Token 20 (sequence 0, step 1)*").Which.ParamName.Should().Be("tokens");
        FluentActions.Invoking(() => model.Run([0, 1, 2], 2, 2)).Should().Throw<ArgumentException>().WithMessage("*batch × steps = 4*3*").Which.ParamName.Should().Be("tokens");
        FluentActions.Invoking(() => model.Run([0, 1], 2, 1, model.NewState(3))).Should().Throw<ArgumentException>().Which.ParamName.Should().Be("state");
        RecurrentState state = model.NewState(2);
        FluentActions.Invoking(() => state.Set(0, new float[16])).Should().Throw<ArgumentException>().WithMessage("*LSTM layer*cell state*").Which.ParamName.Should().Be("cell");
        FluentActions.Invoking(() => state.Set(0, new float[15], new float[15])).Should().Throw<ArgumentException>().WithMessage("*2 × 8*15*");
    }

    [Fact]
    public void The_memory_budget_bounds_the_run()
    {
        SequenceModel model = Lstm();
        long one = model.BufferBytes(1, 1), many = model.BufferBytes(4, 10);
        one.Should().Be(4 * (2 * 8 * 1 + 32 * 1 + 32 * 1 + 20 * 1 + 6), "two buffers as wide as the widest layer, the gates' projection and step, the logits, one embedding row");
        var tight = new SequenceModel(model.Embedding, model.Layers, model.Decoder, new SparseModelOptions { MaxBufferBytes = many });
        tight.Run(new int[40], 4, 10).Should().HaveCount(4 * 10 * 20);
        FluentActions.Invoking(() => tight.Run(new int[44], 4, 11)).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*4 sequences of 11 steps need*budget*");
        FluentActions.Invoking(() => new SequenceModel(model.Embedding, model.Layers, model.Decoder, new SparseModelOptions { MaxBufferBytes = one - 1 }))
            .Should().Throw<ArgumentException>().Which.ParamName.Should().Be("options");
    }
}
