using LargeSparseVsSmallDense.Harness;
using Pruning.Samples.Language;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using Pruning.Optimizers;

namespace LargeSparseVsSmallDense.Experiments;

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
        using Tensor data = LstmLanguageModel.Batchify(trainTokens, settings.Batch);
        long stepsPerEpoch = (data.shape[1] - 1) / settings.Steps;
        var plan = new TrainingPlan(stepsPerEpoch * settings.Epochs);
        double best = double.PositiveInfinity;
        using (var pruner = Training.Pruner(model, plan, sparsity, optimizer))
        {
            for (int epoch = 0; epoch < settings.Epochs; epoch++)
            {
                model.TrainEpoch(data, settings.Steps, optimizer, pruner);
                best = Math.Min(best, Evaluate(model, valid));
            }
            pruner?.Strip();
        }
        double perplexity = Evaluate(model, test);
        var row = new ResultRow("lstm", sparsity > 0 ? "sparse" : "dense", hidden, 1 - (double)Training.NonZeroWeights(model) / Training.Weights(model), Training.NonZeroWeights(model), perplexity, seed);
        log($"  lstm {row.Model,-6} hidden {hidden,-4} sparsity {row.Sparsity,6:P1} nnz {row.Nnz,10:N0}  test perplexity {perplexity:F2} (best validation {best:F2})  seed {seed}  ({clock.Elapsed.TotalSeconds:F0} s)");
        return row;
    }

    /// <summary>Perplexity over a token stream, in batches of 10 parallel streams and <see cref="Settings.Steps"/> steps, state carried across.</summary>
    public double Evaluate(LstmLanguageModel model, long[] tokens) => model.Perplexity(tokens, settings.Steps);

}
