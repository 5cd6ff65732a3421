using LargeSparseVsSmallDense.Harness;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using Pruning.Optimizers;

namespace LargeSparseVsSmallDense.Experiments;

/// <summary>A word-level language model: embedding → stacked LSTM → dropout → softmax layer.</summary>
internal sealed class LstmLanguageModel : nn.Module<Tensor, (Tensor, Tensor)?, (Tensor Logits, (Tensor, Tensor) State)>
{
    private readonly Embedding embedding;
    private readonly LSTM lstm;
    private readonly Dropout dropout;
    private readonly Linear decoder;

    public LstmLanguageModel(int vocabulary, int hidden, int layers, double dropoutRate) : base("lstm_lm")
    {
        embedding = nn.Embedding(vocabulary, hidden);
        lstm = nn.LSTM(hidden, hidden, layers, batchFirst: true, dropout: dropoutRate);
        dropout = nn.Dropout(dropoutRate);
        decoder = nn.Linear(hidden, vocabulary);
        RegisterComponents();
        using var _ = torch.no_grad();
        foreach (var p in parameters()) p.uniform_(-0.1, 0.1);
    }

    public override (Tensor Logits, (Tensor, Tensor) State) forward(Tensor tokens, (Tensor, Tensor)? state)
    {
        var (output, h, c) = lstm.call(dropout.call(embedding.call(tokens)), state);
        return (decoder.call(dropout.call(output)), (h, c));
    }
}

/// <summary>
/// Experiment 3: dense small and medium stacked LSTMs against a large one pruned gradually to 80 % and 90 %, word-level
/// perplexity on the King James Bible (Zhu &amp; Gupta's Penn Treebank experiment, scaled to two CPU cores).
/// Truncated backpropagation through time over contiguous streams, as for PTB.
/// </summary>
internal sealed class LstmExperiment(KjvCorpus corpus, LstmExperiment.Settings settings, Action<string> log)
{
    public sealed record Settings(int Vocabulary, int Layers, int Batch, int Steps, int Epochs, double Dropout, double TrainFraction);

    private readonly Vocabulary _vocabulary = Vocabulary.Build(corpus.Train, settings.Vocabulary);

    public Vocabulary Vocabulary => _vocabulary;

    /// <summary>
    /// Dense models at each of <paramref name="denseHidden"/>; the large model pruned to exactly each dense model's NNZ,
    /// and to each of <paramref name="extraSparsities"/> (the paper's 80 / 90 %).
    /// </summary>
    public IEnumerable<ResultRow> Run(int[] denseHidden, int largeHidden, double[] extraSparsities, int[] seeds)
    {
        long large = NnzBudget.LstmWeights(_vocabulary.Count, largeHidden, settings.Layers);
        double[] sparsities = denseHidden.Where(h => h < largeHidden)
            .Select(h => NnzBudget.SparsityFor(NnzBudget.LstmWeights(_vocabulary.Count, h, settings.Layers), large))
            .Concat(extraSparsities).Distinct().Order().ToArray();
        long[] train = _vocabulary.Encode(corpus.Train);
        train = train[..(int)(train.Length * settings.TrainFraction)];
        long[] valid = _vocabulary.Encode(corpus.Valid), test = _vocabulary.Encode(corpus.Test);
        log($"  corpus: {train.Length:N0} training tokens (of {_vocabulary.Encode(corpus.Train).Length:N0}), {valid.Length:N0} validation, {test.Length:N0} test; vocabulary {_vocabulary.Count:N0}");
        foreach (int seed in seeds)
        {
            foreach (int hidden in denseHidden)
                yield return Train(hidden, 0, seed, train, valid, test);
            foreach (double sparsity in sparsities)
                yield return Train(largeHidden, sparsity, seed, train, valid, test);
        }
    }

    private ResultRow Train(int hidden, double sparsity, int seed, long[] trainTokens, long[] valid, long[] test)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        torch.manual_seed(seed);
        var model = new LstmLanguageModel(_vocabulary.Count, hidden, settings.Layers, settings.Dropout);
        var optimizer = SafeOptim.Adam(model.parameters(), 2e-3);
        using Tensor data = Batchify(trainTokens, settings.Batch);
        long stepsPerEpoch = (data.shape[1] - 1) / settings.Steps;
        var plan = new TrainingPlan(stepsPerEpoch * settings.Epochs);
        double best = double.PositiveInfinity;
        using (var pruner = Training.Pruner(model, plan, sparsity, optimizer))
        {
            for (int epoch = 0; epoch < settings.Epochs; epoch++)
            {
                model.train();
                (Tensor, Tensor)? state = null;
                for (long i = 0; i + 1 < data.shape[1] - settings.Steps + 1; i += settings.Steps)
                {
                    using var scope = torch.NewDisposeScope();
                    Tensor x = data.narrow(1, i, settings.Steps), y = data.narrow(1, i + 1, settings.Steps);
                    optimizer.zero_grad();
                    var (logits, next) = model.call(x, state);
                    nn.functional.cross_entropy(logits.reshape(-1, _vocabulary.Count), y.reshape(-1)).backward();
                    nn.utils.clip_grad_norm_(model.parameters(), 1.0);
                    optimizer.step();
                    pruner?.Step();
                    var previous = state;
                    state = (next.Item1.detach().MoveToOuterDisposeScope(), next.Item2.detach().MoveToOuterDisposeScope());
                    if (previous is { } old) { old.Item1.Dispose(); old.Item2.Dispose(); }
                }
                best = Math.Min(best, Evaluate(model, valid));
            }
            pruner?.Strip();
        }
        double perplexity = Evaluate(model, test);
        var row = new ResultRow("lstm", sparsity > 0 ? "sparse" : "dense", hidden, 1 - (double)Training.NonZeroWeights(model) / Training.Weights(model), Training.NonZeroWeights(model), perplexity, seed);
        log($"  lstm {row.Model,-6} hidden {hidden,-4} sparsity {row.Sparsity,6:P1} nnz {row.Nnz,10:N0}  test perplexity {perplexity:F2} (best validation {best:F2})  seed {seed}  ({clock.Elapsed.TotalSeconds:F0} s)");
        return row;
    }

    /// <summary>Perplexity over a token stream, in batches of 10 parallel streams and 35 steps, state carried across.</summary>
    public double Evaluate(LstmLanguageModel model, long[] tokens)
    {
        using var _ = torch.no_grad();
        model.eval();
        using Tensor data = Batchify(tokens, 10);
        double total = 0;
        long count = 0;
        (Tensor, Tensor)? state = null;
        for (long i = 0; i + 1 < data.shape[1]; i += settings.Steps)
        {
            using var scope = torch.NewDisposeScope();
            long n = Math.Min(settings.Steps, data.shape[1] - 1 - i);
            Tensor x = data.narrow(1, i, n), y = data.narrow(1, i + 1, n);
            var (logits, next) = model.call(x, state);
            total += nn.functional.cross_entropy(logits.reshape(-1, _vocabulary.Count), y.reshape(-1), reduction: nn.Reduction.Sum).item<float>();
            count += y.numel();
            var previous = state;
            state = (next.Item1.MoveToOuterDisposeScope(), next.Item2.MoveToOuterDisposeScope());
            if (previous is { } old) { old.Item1.Dispose(); old.Item2.Dispose(); }
        }
        return Perplexity.FromTotalNll(total, count);
    }

    /// <summary>[batch, length]: the stream cut into <paramref name="batch"/> contiguous rows (the tail that does not fit is dropped).</summary>
    public static Tensor Batchify(long[] tokens, int batch)
    {
        long length = tokens.Length / batch;
        if (length < 2) throw new ArgumentException($"{tokens.Length} tokens are too few for {batch} streams.", nameof(tokens));
        return torch.tensor(tokens[..(int)(length * batch)], [batch, length]);
    }
}
