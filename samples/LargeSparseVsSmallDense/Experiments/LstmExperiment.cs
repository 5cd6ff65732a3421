using LargeSparseVsSmallDense.Harness;
using Pruning;
using Pruning.Samples.Language;
using TorchSharp;
using static TorchSharp.torch;

namespace LargeSparseVsSmallDense.Experiments;

/// <summary>
/// Experiment 3: dense small and medium stacked LSTMs against a large one pruned gradually (Zhu &amp; Gupta's Penn
/// Treebank experiment, scaled to two CPU cores). Truncated backpropagation through time over contiguous streams, as
/// for PTB; the width is the hidden size (= the embedding size).
/// </summary>
internal sealed class LstmExperiment(KjvCorpus corpus, LanguageSettings settings, Action<string> log)
    : LanguageExperiment<LstmLanguageModel>(corpus, settings, log)
{
    protected override string Name => "lstm";

    public override long Weights(int width) => NnzBudget.LstmWeights(Vocabulary.Count, width, Settings.Layers);

    public override LstmLanguageModel Create(int width) => new(Vocabulary.Count, width, Settings.Layers, Settings.Dropout);

    protected override long StepsPerEpoch(Tensor data) => (data.shape[1] - 1) / Settings.Steps;

    protected override void TrainEpoch(LstmLanguageModel model, Tensor data, optim.Optimizer optimizer, GradualPruner? pruner) =>
        model.TrainEpoch(data, Settings.Steps, optimizer, pruner);

    /// <summary>Perplexity over a token stream, in batches of 10 parallel streams and <see cref="LanguageSettings.Steps"/> steps, state carried across.</summary>
    public override double Evaluate(LstmLanguageModel model, long[] tokens) => model.Perplexity(tokens, Settings.Steps);
}
