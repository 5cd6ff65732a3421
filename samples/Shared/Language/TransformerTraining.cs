using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Samples.Language;

/// <summary>How the samples train and evaluate <see cref="TransformerLanguageModel"/>: windows of the context, each from scratch.</summary>
internal static class TransformerTraining
{
    /// <summary>Test streams the perplexity reads side by side.</summary>
    public const int Streams = 10;

    /// <summary>One epoch over <paramref name="data"/> ([streams, length]) in windows of the context; gradients clipped to norm 1; the pruner (if any) steps after the optimizer.</summary>
    public static void TrainEpoch(TransformerLanguageModel model, Tensor data, optim.Optimizer optimizer, GradualPruner? pruner, string label)
    {
        model.train();
        int window = model.Context;
        using var progress = new TrainingProgress(label, Math.Max(1, (data.shape[1] - 1) / window), pruner);
        for (long i = 0; i + window + 1 <= data.shape[1]; i += window)
        {
            using var scope = torch.NewDisposeScope();
            Tensor x = data.narrow(1, i, window), y = data.narrow(1, i + 1, window);
            optimizer.zero_grad();
            Tensor loss = nn.functional.cross_entropy(model.call(x).reshape(-1, model.Vocabulary), y.reshape(-1));
            loss.backward();
            nn.utils.clip_grad_norm_(model.parameters(), 1.0);
            optimizer.step();
            pruner?.Step();
            progress.Step(loss);
        }
        model.eval();
    }

    /// <summary>Perplexity over a token stream read as <see cref="Language.Perplexity.Windows"/> of the context, each window from scratch.</summary>
    public static double Perplexity(TransformerLanguageModel model, long[] tokens)
    {
        using var _ = torch.no_grad();
        model.eval();
        double total = 0;
        long count = 0;
        foreach (var (x, y, n) in Language.Perplexity.Windows(tokens, Streams, model.Context))
        {
            using var scope = torch.NewDisposeScope();
            Tensor logits = model.call(torch.tensor(x.Select(t => (long)t).ToArray(), [Streams, n]));
            total += nn.functional.cross_entropy(logits.reshape(-1, model.Vocabulary), torch.tensor(y), reduction: nn.Reduction.Sum).item<float>();
            count += y.Length;
        }
        return Language.Perplexity.FromTotalNll(total, count);
    }
}
