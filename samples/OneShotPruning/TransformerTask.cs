using Pruning.Reconstruction;
using Pruning.Samples.Language;
using Pruning.Targets;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>The KJV transformer language model of samples/SparseInference ("transformer"): 2 pre-LN blocks, 4 heads.</summary>
internal sealed class TransformerTask(long[] train, long[] test, int vocabulary, int dimension, int context, int epochs) : ModelTask
{
    private const int Layers = 2, Heads = 4, Batch = 20;

    public override string Name => "transformer";

    public override string MetricName => "test_perplexity";

    public override bool HigherIsBetter => false;

    // Lookup tables have no inputs to reconstruct from: both embeddings stay dense for every method, as the LSTM's does.
    // Every Linear is pruned: q, k, v, the attention output, the MLP and the decoder.
    public override PruningTargets Targets => PruningTargets.Default.Exclude("tokens.weight", "positions.weight");

    protected override nn.Module Create()
    {
        torch.manual_seed(1);
        return new TransformerLanguageModel(vocabulary, dimension, Heads, Layers, context, dropoutRate: 0.1);
    }

    protected override string TrainFromScratch(nn.Module model)
    {
        var dense = (TransformerLanguageModel)model;
        using Tensor data = LstmLanguageModel.Batchify(train, Batch);
        var optimizer = Pruning.Optimizers.SafeOptim.Adam(dense.parameters(), 1e-3);
        for (int epoch = 0; epoch < epochs; epoch++) TransformerTraining.TrainEpoch(dense, data, optimizer, null, $"transformer epoch {epoch + 1}");
        return $"{epochs} epochs on {train.Length:N0} tokens";
    }

    /// <summary><paramref name="samples"/> windows of a context's training tokens from positions chosen by the seed, 32 per batch.</summary>
    public override CalibrationSet Calibration(nn.Module model, int samples, int seed)
    {
        var rng = new Random(1000 + seed);
        var windows = Enumerable.Range(0, samples).Select(_ => rng.Next(train.Length - context)).ToArray();
        return new CalibrationSet(windows.Chunk(32).Select(chunk => torch.tensor(chunk.SelectMany(start => train[start..(start + context)]).ToArray(), [chunk.Length, context])).ToList());
    }

    public override double Evaluate(nn.Module model) => TransformerTraining.Perplexity((TransformerLanguageModel)model, test);

    public override void FineTune(nn.Module model, Pruning.GradualPruner pruner, int steps, int seed)
    {
        var lm = (TransformerLanguageModel)model;
        var rng = new Random(2000 + seed);
        Train(model, steps, 5e-4, _ =>
        {
            long[] starts = Enumerable.Range(0, Batch).Select(_ => (long)rng.Next(train.Length - context - 1)).ToArray();
            Tensor x = torch.tensor(starts.SelectMany(s => train[(int)s..(int)(s + context)]).ToArray(), [Batch, context]);
            Tensor y = torch.tensor(starts.SelectMany(s => train[(int)(s + 1)..(int)(s + context + 1)]).ToArray(), [Batch, context]);
            return nn.functional.cross_entropy(lm.call(x).reshape(-1, vocabulary), y.reshape(-1));
        }, pruner);
    }
}
