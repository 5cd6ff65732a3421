using LargeSparseVsSmallDense.Harness;
using Pruning;
using Pruning.Optimizers;
using Pruning.Samples.Language;
using TorchSharp;
using static TorchSharp.torch;

namespace LargeSparseVsSmallDense.Experiments;

/// <summary>How long a language experiment trains, on how much of the text, and the shape every width shares.</summary>
/// <param name="Steps">Tokens per training window: the BPTT length of an LSTM, the context of a transformer.</param>
/// <param name="TrainFraction">The share of the training text used, from its start.</param>
public sealed record LanguageSettings(int Vocabulary, int Layers, int Batch, int Steps, int Epochs, double Dropout, double TrainFraction, double LearningRate);

/// <summary>
/// Zhu &amp; Gupta's language-model comparison on the King James Bible: dense models at small widths against a large
/// one pruned gradually, from scratch, to exactly each small model's non-zeros and to extra sparsities (the paper's
/// 80 / 90 %); word-level test perplexity. A family (LSTM, transformer) says how its models are built, trained and read.
/// </summary>
internal abstract class LanguageExperiment<TModel>(KjvCorpus corpus, LanguageSettings settings, Action<string> log) where TModel : nn.Module
{
    private readonly Vocabulary _vocabulary = Vocabulary.Build(corpus.Train, settings.Vocabulary);

    protected LanguageSettings Settings => settings;

    public Vocabulary Vocabulary => _vocabulary;

    /// <summary>The experiment's name in rows and plots.</summary>
    protected abstract string Name { get; }

    /// <summary>Prunable weights (every parameter with ≥ 2 dimensions) of the model at <paramref name="width"/>.</summary>
    public abstract long Weights(int width);

    /// <summary>A freshly initialized model at <paramref name="width"/> (the seed is set before).</summary>
    public abstract TModel Create(int width);

    /// <summary>Training windows in one epoch over <paramref name="data"/> ([batch, length]).</summary>
    protected abstract long StepsPerEpoch(Tensor data);

    /// <summary>One epoch; the pruner (null for dense) steps after the optimizer.</summary>
    protected abstract void TrainEpoch(TModel model, Tensor data, optim.Optimizer optimizer, GradualPruner? pruner);

    /// <summary>Test perplexity of <paramref name="model"/> over a token stream.</summary>
    public abstract double Evaluate(TModel model, long[] tokens);

    /// <summary>
    /// Dense models at each of <paramref name="denseWidths"/>; the <paramref name="largeWidth"/> model pruned to exactly
    /// each narrower dense model's NNZ, and to each of <paramref name="extraSparsities"/>.
    /// </summary>
    public IEnumerable<ResultRow> Run(int[] denseWidths, int largeWidth, double[] extraSparsities, int[] seeds)
    {
        long large = Weights(largeWidth);
        double[] sparsities = denseWidths.Where(w => w < largeWidth)
            .Select(w => NnzBudget.SparsityFor(Weights(w), large))
            .Concat(extraSparsities).Distinct().Order().ToArray();
        long[] all = _vocabulary.Encode(corpus.Train);
        long[] train = all[..(int)(all.Length * settings.TrainFraction)];
        long[] valid = _vocabulary.Encode(corpus.Valid), test = _vocabulary.Encode(corpus.Test);
        log($"  corpus: {train.Length:N0} training tokens (of {all.Length:N0}), {valid.Length:N0} validation, {test.Length:N0} test; vocabulary {_vocabulary.Count:N0}");
        foreach (int seed in seeds)
        {
            foreach (int width in denseWidths)
                yield return Train(width, 0, seed, train, valid, test);
            foreach (double sparsity in sparsities)
                yield return Train(largeWidth, sparsity, seed, train, valid, test);
        }
    }

    private ResultRow Train(int width, double sparsity, int seed, long[] trainTokens, long[] valid, long[] test)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        torch.manual_seed(seed);
        TModel model = Create(width);
        var optimizer = SafeOptim.Adam(model.parameters(), settings.LearningRate);
        using Tensor data = LstmLanguageModel.Batchify(trainTokens, settings.Batch);
        var plan = new TrainingPlan(StepsPerEpoch(data) * settings.Epochs);
        double best = double.PositiveInfinity;
        using (var pruner = Training.Pruner(model, plan, sparsity, optimizer))
        {
            for (int epoch = 0; epoch < settings.Epochs; epoch++)
            {
                TrainEpoch(model, data, optimizer, pruner);
                best = Math.Min(best, Evaluate(model, valid));
            }
            pruner?.Strip();
        }
        double perplexity = Evaluate(model, test);
        long nnz = Training.NonZeroWeights(model);
        var row = new ResultRow(Name, sparsity > 0 ? "sparse" : "dense", width, 1 - (double)nnz / Training.Weights(model), nnz, perplexity, seed);
        log($"  {Name} {row.Model,-6} width {width,-4} sparsity {row.Sparsity,6:P1} nnz {row.Nnz,10:N0}  test perplexity {perplexity:F2} (best validation {best:F2})  seed {seed}  ({clock.Elapsed.TotalSeconds:F0} s)");
        return row;
    }
}
