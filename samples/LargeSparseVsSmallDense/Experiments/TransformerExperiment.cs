using LargeSparseVsSmallDense.Harness;
using Pruning;
using Pruning.Samples.Language;
using TorchSharp;
using static TorchSharp.torch;

namespace LargeSparseVsSmallDense.Experiments;

/// <summary>
/// The same comparison for decoder-only transformers (pre-LN, learned positions, untied decoder): the width is the
/// model dimension d (MLP 4d, <paramref name="heads"/> heads at every width), the depth stays; windows of the context
/// (<see cref="LanguageSettings.Steps"/>), each from scratch, for training and test.
/// </summary>
internal sealed class TransformerExperiment(KjvCorpus corpus, LanguageSettings settings, int heads, Action<string> log)
    : LanguageExperiment<TransformerLanguageModel>(corpus, settings, log)
{
    protected override string Name => "transformer";

    public override long Weights(int width) => NnzBudget.TransformerWeights(Vocabulary.Count, width, Settings.Layers, Settings.Steps);

    public override TransformerLanguageModel Create(int width)
    {
        if (width % heads != 0) throw new ArgumentOutOfRangeException(nameof(width), width, $"A transformer's width must be a multiple of its {heads} heads.");
        return new(Vocabulary.Count, width, heads, Settings.Layers, Settings.Steps, Settings.Dropout);
    }

    protected override long StepsPerEpoch(Tensor data) => Math.Max(1, (data.shape[1] - 1) / Settings.Steps);

    protected override void TrainEpoch(TransformerLanguageModel model, Tensor data, optim.Optimizer optimizer, GradualPruner? pruner) =>
        TransformerTraining.TrainEpoch(model, data, optimizer, pruner, "transformer epoch");

    public override double Evaluate(TransformerLanguageModel model, long[] tokens) => TransformerTraining.Perplexity(model, tokens);
}
