using Pruning.Export;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Sequences;
using Pruning.Sparse.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Export;

/// <summary>Recurrent language models exported to the sparse runtime against TorchSharp's own LSTM and GRU.</summary>
[Collection(TorchCollection.Name)]
public sealed class SequenceExportTests
{
    private const int Vocabulary = 40, Embedding = 12, Hidden = 16, Layers = 2;

    /// <summary>Embedding → 2-layer LSTM or GRU → Linear, as the KJV language model is built; pruned to about 70 % at random.</summary>
    private sealed class LanguageModel : nn.Module<Tensor, (Tensor, Tensor)?, Tensor>
    {
        private readonly Embedding embedding;
        private readonly nn.Module recurrent;
        private readonly Dropout dropout;
        private readonly Linear decoder;
        private readonly bool _batchFirst;

        public LanguageModel(bool gru, bool batchFirst, int seed) : base("lm")
        {
            torch.manual_seed(seed);
            _batchFirst = batchFirst;
            embedding = nn.Embedding(Vocabulary, Embedding);
            recurrent = gru ? nn.GRU(Embedding, Hidden, Layers, batchFirst: batchFirst) : nn.LSTM(Embedding, Hidden, Layers, batchFirst: batchFirst);
            dropout = nn.Dropout(0.3);
            decoder = nn.Linear(Hidden, Vocabulary);
            RegisterComponents();
            using var _ = torch.no_grad();
            foreach (var p in parameters())
            {
                p.uniform_(-0.5, 0.5);
                using var keep = torch.rand(p.shape).gt(torch.tensor(0.7f));
                if (p.dim() == 2) p.mul_(keep);
            }
        }

        public bool BatchFirst => _batchFirst;

        /// <summary>Logits [batch, steps, vocabulary] for tokens [batch, steps], whatever the module's layout.</summary>
        public override Tensor forward(Tensor tokens, (Tensor, Tensor)? state)
        {
            Tensor x = embedding.call(_batchFirst ? tokens : tokens.t());
            Tensor output = recurrent switch
            {
                LSTM lstm => lstm.call(dropout.call(x), state).Item1,
                GRU gru => gru.call(dropout.call(x), state?.Item1).Item1,
                _ => throw new InvalidOperationException(),
            };
            Tensor logits = decoder.call(dropout.call(output));
            return _batchFirst ? logits : logits.transpose(0, 1);
        }
    }

    private static int[] Tokens(int batch, int steps, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, batch * steps).Select(_ => random.Next(Vocabulary)).ToArray();
    }

    private static float[] Torch(LanguageModel model, int[] tokens, int batch, int steps, (Tensor, Tensor)? state)
    {
        using var _ = torch.no_grad();
        model.eval();
        using var input = torch.tensor(tokens.Select(t => (long)t).ToArray(), [batch, steps]);
        using var logits = model.call(input, state).contiguous();
        return TestModels.Values(logits);
    }

    private static void ShouldMatch(float[] actual, float[] expected, double tolerance, string because)
    {
        actual.Should().HaveCount(expected.Length);
        double scale = expected.Max(v => Math.Abs(v));
        double worst = actual.Zip(expected, (a, e) => Math.Abs(a - e)).Max();
        worst.Should().BeLessThan(tolerance * scale, because);
    }

    [Theory]
    [InlineData(false, true, 1)]
    [InlineData(false, true, 50)]
    [InlineData(false, false, 50)]
    [InlineData(true, true, 1)]
    [InlineData(true, true, 50)]
    [InlineData(true, false, 50)]
    public void Exported_lstm_and_gru_give_torchsharps_logits_from_a_zero_state(bool gru, bool batchFirst, int steps)
    {
        var model = new LanguageModel(gru, batchFirst, seed: steps + (gru ? 100 : 0));
        SequenceModel exported = SparseExport.ToSequenceModel(model);
        exported.Layers.Should().HaveCount(Layers).And.AllBeOfType(gru ? typeof(GruLayer) : typeof(LstmLayer));
        exported.Layers[0].WeightHh.Format.Should().Be(MatrixFormat.Csr, "about 70 % of its weights are zero");
        int[] tokens = Tokens(3, steps, seed: 7);
        ShouldMatch(exported.Run(tokens, 3, steps), Torch(model, tokens, 3, steps, null), 1e-4, $"{(gru ? "GRU" : "LSTM")}, {steps} steps");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void An_initial_state_is_taken_and_the_final_state_equals_torchsharps(bool gru)
    {
        var model = new LanguageModel(gru, batchFirst: true, seed: 11);
        SequenceModel exported = SparseExport.ToSequenceModel(model);
        torch.manual_seed(12);
        using Tensor h0 = torch.randn(Layers, 2, Hidden), c0 = torch.randn(Layers, 2, Hidden);
        RecurrentState state = exported.NewState(2);
        for (int l = 0; l < Layers; l++)
            state.Set(l, TestModels.Values(h0[l]), gru ? default : TestModels.Values(c0[l]));
        int[] tokens = Tokens(2, 20, seed: 13);
        ShouldMatch(exported.Run(tokens, 2, 20, state), Torch(model, tokens, 2, 20, (h0, c0)), 1e-4, "from the given state");

        using var _ = torch.no_grad();
        using var input = torch.tensor(tokens.Select(t => (long)t).ToArray(), [2, 20]);
        var recurrent = model.named_children().Single(c => c.module is LSTM or GRU).module;
        using var embedded = ((Embedding)model.named_children().First().module).call(input);
        Tensor hn = recurrent is LSTM lstm ? lstm.call(embedded, (h0, c0)).Item2 : ((GRU)recurrent).call(embedded, h0).Item2;
        for (int l = 0; l < Layers; l++)
            ShouldMatch(state.GetHidden(l), TestModels.Values(hn[l]), 1e-4, $"final hidden state of layer {l}");
    }

    [Fact]
    public void Stepping_one_token_at_a_time_equals_running_the_sequence()
    {
        var model = new LanguageModel(gru: false, batchFirst: true, seed: 21);
        SequenceModel exported = SparseExport.ToSequenceModel(model);
        int[] tokens = Tokens(2, 12, seed: 22);
        float[] whole = exported.Run(tokens, 2, 12);
        RecurrentState state = exported.NewState(2);
        var stepped = new float[whole.Length];
        var logits = new float[2 * Vocabulary];
        for (int t = 0; t < 12; t++)
        {
            exported.Step([tokens[t], tokens[12 + t]], logits, state);
            for (int n = 0; n < 2; n++) logits.AsSpan(n * Vocabulary, Vocabulary).CopyTo(stepped.AsSpan((n * 12 + t) * Vocabulary));
        }
        ShouldMatch(stepped, whole, 1e-5, "the step API computes what the sequence API does");
    }

    [Fact]
    public void The_file_round_trips_to_the_same_model_and_logits()
    {
        var model = new LanguageModel(gru: true, batchFirst: true, seed: 31);
        SequenceModel exported = SparseExport.ToSequenceModel(model);
        SequenceModel loaded = SequenceModel.Read(exported.ToBytes(), "lm.psq");
        loaded.Describe().Should().Be(exported.Describe());
        int[] tokens = Tokens(2, 5, seed: 32);
        loaded.Run(tokens, 2, 5).Should().Equal(exported.Run(tokens, 2, 5));
    }

    [Fact]
    public void Out_of_range_tokens_bidirectional_layers_and_foreign_modules_are_refused_by_name()
    {
        SequenceModel exported = SparseExport.ToSequenceModel(new LanguageModel(gru: false, batchFirst: true, seed: 41));
        FluentActions.Invoking(() => exported.Run([1, Vocabulary, 2], 1, 3)).Should().Throw<ArgumentOutOfRangeException>()
            .WithMessage($"*Token {Vocabulary} (sequence 0, step 1)*[0, {Vocabulary})*").Which.ParamName.Should().Be("tokens");
        FluentActions.Invoking(() => exported.Run([-1], 1, 1)).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*Token -1*");

        var bidirectional = new Container(("embed", nn.Embedding(10, 4)), ("rnn", nn.LSTM(4, 6, bidirectional: true)), ("out", nn.Linear(12, 10)));
        FluentActions.Invoking(() => SparseExport.ToSequenceModel(bidirectional)).Should().Throw<NotSupportedException>().WithMessage("*'rnn' is bidirectional*");
        var foreign = new Container(("embed", nn.Embedding(10, 4)), ("norm", nn.LayerNorm(4)), ("rnn", nn.GRU(4, 6)), ("out", nn.Linear(6, 10)));
        FluentActions.Invoking(() => SparseExport.ToSequenceModel(foreign)).Should().Throw<NotSupportedException>().WithMessage("*'norm' (LayerNorm)*");
    }

    /// <summary>A module that only holds children, in the order given.</summary>
    private sealed class Container : nn.Module
    {
        public Container(params (string Name, nn.Module Module)[] children) : base("container")
        {
            foreach (var (name, module) in children) register_module(name, module);
        }
    }
}
