using System.Text.Json;
using LargeSparseVsSmallDense.Experiments;
using LargeSparseVsSmallDense.Harness;
using Pruning.Samples.Language;
using Pruning;
using Pruning.Scheduling;
using TorchSharp;
using static TorchSharp.torch;

namespace Samples.Tests;

[CollectionDefinition("torch", DisableParallelization = true)]
public sealed class TorchCollection;

[Collection("torch")]
public class HarnessTests
{
    [Fact]
    public void The_corpus_is_split_by_blocks_of_100_verses_90_5_5()
    {
        var lines = Enumerable.Range(0, 4000).Select(i => $"Ge1:{i + 1} verse {i}");
        var corpus = KjvCorpus.Parse(lines);
        // 40 blocks: 18 and 38 are validation, 19 and 39 test, the other 36 training.
        corpus.Train.Should().HaveCount(3600);
        corpus.Valid.Should().HaveCount(200);
        corpus.Test.Should().HaveCount(200);
        // Numbers are not words, so "verse 1800" keeps one word.
        corpus.Valid[0].Should().Equal("verse");
        corpus.Test[^1].Should().Equal("verse");
    }

    [Fact]
    public void Words_are_lower_case_letters_with_inner_apostrophes()
    {
        KjvCorpus.Words("And the LORD's anger, 12 men! The saints' rest.").Should().Equal("and", "the", "lord's", "anger", "men", "the", "saints", "rest");
    }

    [Fact]
    public void Lines_without_a_reference_are_refused_with_their_number()
    {
        FluentActions.Invoking(() => KjvCorpus.Parse(["Ge1:1 In the beginning", "no reference here"])).Should().Throw<InvalidDataException>().WithMessage("Verse line 2 *");
    }

    [Fact]
    public void The_vocabulary_keeps_the_most_frequent_training_words_and_maps_the_rest_to_unk()
    {
        string[][] train = [["b", "a", "a", "c"], ["b", "d", "a"]];
        var vocab = Vocabulary.Build(train, size: 4);
        vocab.Words.Should().Equal("<unk>", "<eos>", "a", "b");   // a ×3, b ×2; c and d (×1) do not fit
        vocab.Encode([["a", "c", "zzz"], ["b"]]).Should().Equal(2, 0, 0, 1, 3, 1);
        Vocabulary.Build([["y", "x"]], 10).Words.Should().Equal("<unk>", "<eos>", "x", "y");   // ties alphabetically
    }

    [Fact]
    public void Perplexity_matches_hand_computed_values()
    {
        // Uniform over 7 words: perplexity 7.
        Perplexity.FromTotalNll(Perplexity.TotalNll(new float[3 * 7], [0, 3, 6], 7), 3).Should().BeApproximately(7, 1e-9);
        // Two words with logits (0, ln 3): p(1) = 3/4, p(0) = 1/4. Targets 1 then 0: exp((ln 4/3 + ln 4) / 2) = sqrt(16/3).
        float l = (float)Math.Log(3);
        Perplexity.FromTotalNll(Perplexity.TotalNll([0, l, 0, l], [1, 0], 2), 2).Should().BeApproximately(Math.Sqrt(16.0 / 3), 1e-6);
        FluentActions.Invoking(() => Perplexity.FromTotalNll(1, 0)).Should().Throw<ArgumentOutOfRangeException>();
    }

    [Fact]
    public void The_language_model_evaluation_agrees_with_the_reference_perplexity()
    {
        torch.manual_seed(3);
        var model = new LstmLanguageModel(vocabulary: 11, hidden: 8, layers: 2, dropoutRate: 0);
        model.eval();
        var tokens = Enumerable.Range(0, 10 * 8 + 1).Select(i => (long)(i * 7 % 11)).ToArray();
        var corpus = KjvCorpus.Parse(["Ge1:1 a b c d e f g h i"]);   // 9 words + <unk> + <eos> = the model's 11
        var experiment = new LstmExperiment(corpus, new LanguageSettings(11, 2, 10, 35, 1, 0, 1, 2e-3), _ => { });
        double evaluated = experiment.Evaluate(model, tokens);

        // Reference: the same 10 streams of 8 tokens, one pass, logits pulled out and scored by the harness.
        using var data = LstmLanguageModel.Batchify(tokens, 10);
        using var _ = torch.no_grad();
        var (logits, _) = model.call(data.narrow(1, 0, 7), null);
        float[] flat = logits.reshape(-1, 11).data<float>().ToArray();
        long[] targets = data.narrow(1, 1, 7).reshape(-1).data<long>().ToArray();
        evaluated.Should().BeApproximately(Perplexity.FromTotalNll(Perplexity.TotalNll(flat, targets, 11), targets.Length), 1e-3);
    }

    [Theory]
    [InlineData(50)]
    [InlineData(200)]
    public void Mlp_weight_counts_match_the_model(int width) =>
        Training.Weights(ImageExperiments.MlpModel(width)).Should().Be(NnzBudget.MlpWeights(width));

    [Theory]
    [InlineData(0.25)]
    [InlineData(1.0)]
    public void Cnn_weight_counts_match_the_model(double alpha) =>
        Training.Weights(ImageExperiments.CnnModel(alpha)).Should().Be(NnzBudget.CnnWeights(alpha));

    [Fact]
    public void Lstm_weight_counts_match_the_model_and_include_the_lstm_gates() =>
        Training.Weights(new LstmLanguageModel(100, 16, 2, 0)).Should().Be(NnzBudget.LstmWeights(100, 16, 2));

    [Theory]
    [InlineData(16, 1)]
    [InlineData(32, 2)]
    public void Transformer_weight_counts_match_the_model_and_include_attention_mlp_and_positions(int dimension, int layers) =>
        Training.Weights(new TransformerLanguageModel(100, dimension, 4, layers, 12)).Should().Be(NnzBudget.TransformerWeights(100, dimension, layers, 12));

    [Fact]
    public void The_transformer_experiment_prunes_every_projection_and_embedding_and_refuses_widths_the_heads_do_not_divide()
    {
        var corpus = KjvCorpus.Parse(["Ge1:1 a b c d e f g h i"]);
        var experiment = new TransformerExperiment(corpus, new LanguageSettings(11, 2, 10, 8, 1, 0, 1, 1e-3), heads: 4, _ => { });
        var model = experiment.Create(16);
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5) });
        pruner.ParameterNames.Should().HaveCount(2 + 2 * 6 + 1).And.Contain(["tokens.weight", "positions.weight", "decoder.weight", "blocks.1.query.weight", "blocks.1.down.weight"]);
        pruner.Step();
        Training.NonZeroWeights(model).Should().BeCloseTo(experiment.Weights(16) / 2, 15);
        FluentActions.Invoking(() => experiment.Create(18)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("width");
    }

    [Fact]
    public void A_wide_model_pruned_to_a_narrow_ones_budget_keeps_that_many_non_zeros()
    {
        long budget = NnzBudget.MlpWeights(50);
        var model = ImageExperiments.MlpModel(200);
        using (var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(NnzBudget.SparsityFor(budget, NnzBudget.MlpWeights(200))) }))
            pruner.Step();
        // Each of the 3 tensors rounds its own count: at most one weight per tensor away from the budget.
        Math.Abs(Training.NonZeroWeights(model) - budget).Should().BeLessThanOrEqualTo(3);
        FluentActions.Invoking(() => NnzBudget.SparsityFor(10, 5)).Should().Throw<ArgumentOutOfRangeException>();
    }

    [Fact]
    public void The_lstm_weights_are_pruned_too()
    {
        var model = new LstmLanguageModel(50, 16, 2, 0);
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.8) });
        pruner.ParameterNames.Should().Contain(["lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.weight_ih_l1", "lstm.weight_hh_l1", "embedding.weight", "decoder.weight"]);
        pruner.Step();
        var w = model.get_parameter("lstm.weight_hh_l1")!.detach().data<float>().ToArray();
        (w.Count(v => v == 0) / (double)w.Length).Should().BeApproximately(0.8, 1e-3);
        // And the masks hold through a forward/backward/step: the LSTM reads its parameters directly.
        var optimizer = torch.optim.SGD(model.parameters(), 0.5);
        var (logits, _) = model.call(torch.randint(50, [2, 5]), null);
        logits.sum().backward();
        optimizer.step();
        pruner.Step();
        model.get_parameter("lstm.weight_hh_l1")!.detach().data<float>().ToArray().Count(v => v == 0).Should().Be(w.Count(v => v == 0));
    }

    [Fact]
    public void The_summary_has_mean_and_spread_and_the_json_the_required_keys()
    {
        ResultRow[] rows = [new("mlp", "dense", 50, 0, 100, 0.80, 1), new("mlp", "dense", 50, 0, 100, 0.84, 2), new("mlp", "sparse", 200, 0.9, 101, 0.83, 1)];
        var summary = Report.Summarize(rows);
        summary.Should().HaveCount(2);
        summary[0].Mean.Should().BeApproximately(0.82, 1e-12);
        summary[0].Spread.Should().BeApproximately(Math.Sqrt(0.0008), 1e-12);
        string path = Path.GetTempFileName();
        try
        {
            Report.WriteJson(path, rows);
            using var json = JsonDocument.Parse(File.ReadAllText(path));
            var first = json.RootElement[0];
            foreach (string key in new[] { "experiment", "width", "sparsity", "nnz", "metric", "seed" }) first.TryGetProperty(key, out var _).Should().BeTrue(key);
            first.GetProperty("nnz").GetInt64().Should().Be(100);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
