using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Samples.Language;

/// <summary>A word-level language model: embedding → stacked LSTM → dropout → softmax layer.</summary>
internal sealed class LstmLanguageModel : nn.Module<Tensor, (Tensor, Tensor)?, (Tensor Logits, (Tensor, Tensor) State)>
{
    private readonly Embedding embedding;
    private readonly LSTM lstm;
    private readonly Dropout dropout;
    private readonly Linear decoder;
    private readonly int _vocabulary;

    public LstmLanguageModel(int vocabulary, int hidden, int layers, double dropoutRate) : base("lstm_lm")
    {
        _vocabulary = vocabulary;
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

    /// <summary>
    /// One epoch of truncated backpropagation through time over <paramref name="data"/> ([streams, length]) in windows of
    /// <paramref name="steps"/>, the state carried from window to window; gradients clipped to norm 1; the pruner (if
    /// any) steps after the optimizer.
    /// </summary>
    public void TrainEpoch(Tensor data, int steps, optim.Optimizer optimizer, Pruning.GradualPruner? pruner, string label = "LSTM epoch")
    {
        train();
        (Tensor, Tensor)? state = null;
        using var progress = new TrainingProgress(label, Math.Max(1, (data.shape[1] - steps + steps - 1) / steps), pruner);
        for (long i = 0; i + 1 < data.shape[1] - steps + 1; i += steps)
        {
            using var scope = torch.NewDisposeScope();
            Tensor x = data.narrow(1, i, steps), y = data.narrow(1, i + 1, steps);
            optimizer.zero_grad();
            var (logits, next) = call(x, state);
            Tensor loss = nn.functional.cross_entropy(logits.reshape(-1, _vocabulary), y.reshape(-1));
            loss.backward();
            nn.utils.clip_grad_norm_(parameters(), 1.0);
            optimizer.step();
            pruner?.Step();
            progress.Step(loss);
            var previous = state;
            state = (next.Item1.detach().MoveToOuterDisposeScope(), next.Item2.detach().MoveToOuterDisposeScope());
            if (previous is { } old) { old.Item1.Dispose(); old.Item2.Dispose(); }
        }
        if (state is { } last) { last.Item1.Dispose(); last.Item2.Dispose(); }
    }

    /// <summary>Perplexity over a token stream, as 10 parallel streams read in windows of <paramref name="steps"/>, state carried across.</summary>
    public double Perplexity(long[] tokens, int steps)
    {
        using var _ = torch.no_grad();
        eval();
        using Tensor data = Batchify(tokens, 10);
        double total = 0;
        long count = 0;
        (Tensor, Tensor)? state = null;
        for (long i = 0; i + 1 < data.shape[1]; i += steps)
        {
            using var scope = torch.NewDisposeScope();
            long n = Math.Min(steps, data.shape[1] - 1 - i);
            Tensor x = data.narrow(1, i, n), y = data.narrow(1, i + 1, n);
            var (logits, next) = call(x, state);
            total += nn.functional.cross_entropy(logits.reshape(-1, _vocabulary), y.reshape(-1), reduction: nn.Reduction.Sum).item<float>();
            count += y.numel();
            var previous = state;
            state = (next.Item1.MoveToOuterDisposeScope(), next.Item2.MoveToOuterDisposeScope());
            if (previous is { } old) { old.Item1.Dispose(); old.Item2.Dispose(); }
        }
        if (state is { } last) { last.Item1.Dispose(); last.Item2.Dispose(); }
        return Language.Perplexity.FromTotalNll(total, count);
    }

    /// <summary>[batch, length]: the stream cut into <paramref name="batch"/> contiguous rows (the tail that does not fit is dropped).</summary>
    public static Tensor Batchify(long[] tokens, int batch)
    {
        long length = tokens.Length / batch;
        if (length < 2) throw new ArgumentException($"{tokens.Length} tokens are too few for {batch} streams.", nameof(tokens));
        return torch.tensor(tokens[..(int)(length * batch)], [batch, length]);
    }
}
