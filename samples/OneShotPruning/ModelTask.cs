using Pruning;
using Pruning.Reconstruction;
using Pruning.Samples;
using Pruning.Targets;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>One of the sample's models: how it is trained, copied, calibrated, evaluated and fine-tuned.</summary>
internal abstract class ModelTask
{
    /// <summary>"mlp", "cnn" or "lstm": the summary's model key.</summary>
    public abstract string Name { get; }

    /// <summary>"test_accuracy" or "test_perplexity".</summary>
    public abstract string MetricName { get; }

    public abstract bool HigherIsBetter { get; }

    /// <summary>The weights every method prunes (the same for all, so that the counts compare).</summary>
    public abstract PruningTargets Targets { get; }

    /// <summary>Trains the dense model (or loads it from <paramref name="cache"/>, written by an earlier run with the same settings).</summary>
    public abstract void TrainDense(string cache);

    /// <summary>A fresh model holding the dense weights.</summary>
    public abstract nn.Module CopyOfDense();

    /// <summary><paramref name="samples"/> training samples chosen by <paramref name="seed"/>, in batches, with how to run the model.</summary>
    public abstract CalibrationSet Calibration(nn.Module model, int samples, int seed);

    public abstract double Evaluate(nn.Module model);

    /// <summary>A short fine-tune with the pruner holding the masks (it steps after every optimizer step).</summary>
    public abstract void FineTune(nn.Module model, GradualPruner pruner, int steps, int seed);

    /// <summary>Trains with Adam on batches drawn by <paramref name="batch"/>; the pruner, if any, steps after each update.</summary>
    protected static void Train(nn.Module model, int steps, double learningRate, Func<int, Tensor> loss, GradualPruner? pruner)
    {
        model.train();
        var optimizer = Pruning.Optimizers.SafeOptim.Adam(model.parameters(), learningRate);
        using var progress = new TrainingProgress(pruner is null ? "training" : "fine-tuning", steps, pruner);
        for (int step = 0; step < steps; step++)
        {
            using var scope = torch.NewDisposeScope();
            optimizer.zero_grad();
            Tensor value = loss(step);
            value.backward();
            nn.utils.clip_grad_norm_(model.parameters(), 5.0);
            optimizer.step();
            pruner?.Step();
            progress.Step(value);
        }
        model.eval();
    }
}
