using Pruning.Reconstruction;
using Pruning.Samples.Language;
using Pruning.Targets;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>The 2-layer KJV word-level LSTM language model of samples/LargeSparseVsSmallDense ("lstm").</summary>
internal sealed class LanguageTask(long[] train, long[] test, int vocabulary, int hidden, int epochs) : ModelTask
{
    private const int Layers = 2, Batch = 20, Steps = 35;
    private const double Dropout = 0.3;

    public override string Name => "lstm";

    public override string MetricName => "test_perplexity";

    public override bool HigherIsBetter => false;

    // The embedding is a lookup table: it has no inputs to reconstruct from, so it stays dense for every method.
    public override PruningTargets Targets => PruningTargets.Default.Exclude("embedding.weight");

    protected override nn.Module Create()
    {
        torch.manual_seed(1);
        return new LstmLanguageModel(vocabulary, hidden, Layers, Dropout);
    }

    protected override string TrainFromScratch(nn.Module model)
    {
        var dense = (LstmLanguageModel)model;
        using Tensor data = LstmLanguageModel.Batchify(train, Batch);
        var optimizer = Pruning.Optimizers.SafeOptim.Adam(dense.parameters(), 2e-3);
        for (int epoch = 0; epoch < epochs; epoch++) dense.TrainEpoch(data, Steps, optimizer, null);
        return $"{epochs} epochs on {train.Length:N0} tokens";
    }

    /// <summary><paramref name="samples"/> windows of 35 training tokens from positions chosen by the seed, 32 per batch.</summary>
    public override CalibrationSet Calibration(nn.Module model, int samples, int seed)
    {
        var rng = new Random(1000 + seed);
        var windows = Enumerable.Range(0, samples).Select(_ => rng.Next(train.Length - Steps)).ToArray();
        var batches = windows.Chunk(32).Select(chunk => torch.tensor(chunk.SelectMany(start => train[start..(start + Steps)]).ToArray(), [chunk.Length, Steps])).ToList();
        var lm = (LstmLanguageModel)model;
        return new CalibrationSet(batches, x => lm.call(x, null));
    }

    public override double Evaluate(nn.Module model) => ((LstmLanguageModel)model).Perplexity(test, Steps);

    public override void FineTune(nn.Module model, Pruning.GradualPruner pruner, int steps, int seed)
    {
        var lm = (LstmLanguageModel)model;
        var rng = new Random(2000 + seed);
        Train(model, steps, 5e-4, _ =>
        {
            long[] starts = Enumerable.Range(0, Batch).Select(_ => (long)rng.Next(train.Length - Steps - 1)).ToArray();
            Tensor x = torch.tensor(starts.SelectMany(s => train[(int)s..(int)(s + Steps)]).ToArray(), [Batch, Steps]);
            Tensor y = torch.tensor(starts.SelectMany(s => train[(int)(s + 1)..(int)(s + Steps + 1)]).ToArray(), [Batch, Steps]);
            var (logits, _) = lm.call(x, null);
            return nn.functional.cross_entropy(logits.reshape(-1, vocabulary), y.reshape(-1));
        }, pruner);
    }
}
