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

    private nn.Module? _dense;

    /// <summary>A fresh model of this task, initialized from seed 1.</summary>
    protected abstract nn.Module Create();

    /// <summary>Trains <paramref name="model"/> from scratch; returns what it saw, for the log ("3 epochs on 60,000 images").</summary>
    protected abstract string TrainFromScratch(nn.Module model);

    /// <summary>Trains the dense model (or loads it from <paramref name="cache"/>, written by an earlier run with the same settings).</summary>
    public void TrainDense(string cache)
    {
        _dense = Create();
        if (File.Exists(cache))
        {
            _dense.load(cache);
            Console.WriteLine($"{Name}: dense model loaded from {cache}");
        }
        else
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            string seen = TrainFromScratch(_dense);
            _dense.save(cache);
            Console.WriteLine($"{Name}: dense model trained ({seen}) in {clock.Elapsed.TotalSeconds:F0} s, saved to {cache}");
        }
        _dense.eval();
        Console.WriteLine($"{Name}: dense {MetricName} {Evaluate(_dense).ToString(HigherIsBetter ? "F4" : "F2", System.Globalization.CultureInfo.CurrentCulture)}");
    }

    /// <summary>A fresh model holding the dense weights.</summary>
    public nn.Module CopyOfDense()
    {
        nn.Module copy = Create();
        copy.load_state_dict((_dense ?? throw new InvalidOperationException("TrainDense first.")).state_dict());
        copy.eval();
        return copy;
    }

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
