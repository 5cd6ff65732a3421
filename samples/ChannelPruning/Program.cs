// Channel pruning on Fashion-MNIST: a conv-BN-ReLU ×3 CNN trained with network slimming's L1 penalty on the
// BatchNorm scales, channels pruned gradually on the cubic schedule, then physically removed; compared with L1-norm
// filter pruning at the same ratio and with the dense model.
using System.CommandLine;
using System.Diagnostics;
using Pruning;
using Pruning.Criteria;
using Pruning.Grouping;
using Pruning.Interop;
using Pruning.Samples;
using Pruning.Scheduling;
using Pruning.Structure;
using Pruning.Targets;
using Spectre.Console;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using Pruning.Optimizers;

var epochs = new Option<int>("--epochs") { Description = "Training epochs per model.", DefaultValueFactory = _ => 3 };
var ratio = new Option<double>("--channel-sparsity") { Description = "Fraction of each conv layer's channels to remove, in [0, 1).", DefaultValueFactory = _ => 0.5 };
var penalty = new Option<double>("--l1") { Description = "λ of the L1 penalty on BatchNorm scales (network slimming).", DefaultValueFactory = _ => 1e-4 };
var dataDir = new Option<string>("--data") { Description = "Directory with the Fashion-MNIST IDX files.", DefaultValueFactory = _ => FashionMnist.DefaultDirectory };
var seed = new Option<int>("--seed") { Description = "Seed for weights and batch order.", DefaultValueFactory = _ => 1 };
var trainLimit = new Option<int>("--train-limit") { Description = "Use only the first N training images; 0 = all.", DefaultValueFactory = _ => 0 };
var summaryJson = new Option<string?>("--summary-json") { Description = "Write the results as JSON to this file." };

var root = new RootCommand("Network slimming vs L1-norm filter pruning on a small CNN, with physical channel removal.")
{
    epochs, ratio, penalty, dataDir, seed, trainLimit, summaryJson,
};
root.SetAction(parse =>
{
    TorchHealth.Ensure();   // libtorch's known answers first: one warning line if this CPU gets them wrong (docs/reference/installation.md)
    try
    {
        return ChannelDemo.Run(parse.GetValue(epochs), parse.GetValue(ratio), parse.GetValue(penalty), parse.GetValue(dataDir)!,
            parse.GetValue(seed), parse.GetValue(trainLimit), parse.GetValue(summaryJson));
    }
    catch (Exception e) when (e is FileNotFoundException or InvalidDataException or ArgumentException)
    {
        AnsiConsole.MarkupLineInterpolated($"[red]error:[/] {e.Message}");
        return 2;
    }
});
return root.Parse(args).Invoke();

internal static class ChannelDemo
{
    private const int BatchSize = 128;

    public static int Run(int epochs, double ratio, double l1, string data, int seed, int trainLimit, string? summaryPath)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(epochs, "--epochs");
        ArgumentOutOfRangeException.ThrowIfNegative(l1, "--l1");
        ArgumentOutOfRangeException.ThrowIfNegative(trainLimit, "--train-limit");
        var train = FashionMnist.Load(data, train: true);
        var test = FashionMnist.Load(data, train: false);
        if (trainLimit > 0 && trainLimit < train.Count) train = train.Take(trainLimit);
        var clock = Stopwatch.StartNew();
        long steps = (train.Count + BatchSize - 1) / BatchSize * epochs;
        var schedule = new PolynomialDecaySchedule(0, ratio, beginStep: Math.Min(steps / epochs, steps / 5), endStep: (long)(steps * 0.7), frequency: Math.Max(1, steps / 40));
        AnsiConsole.MarkupLineInterpolated($"[bold]Channel pruning on Fashion-MNIST[/]: {train.Count:N0} training images, {epochs} epochs, {ratio:P0} of the conv channels removed; {schedule}.");

        var dense = Train("dense", seed, epochs, train, prune: null, l1: 0);
        var slimmed = Train("slimming", seed, epochs, train, prune: channels => Options(schedule, new BatchNormScalingCriterion(channels), channels), l1);
        var filters = Train("L1 filters", seed, epochs, train, prune: channels => Options(schedule, new MagnitudeCriterion(), channels), l1: 0);

        var rows = new List<Dictionary<string, object>>();
        var table = new Table().Title("Results (test set; latency = forward pass of 256 images, median, side by side)")
            .AddColumns("model", "params", "channels", "test accuracy", "masked accuracy", "latency ms", "speed-up");
        using var batch = test.Images.narrow(0, 0, 256).reshape(-1, 1, 28, 28);
        var models = new List<(string Name, Sequential Model, double? Masked)> { ("dense", dense.Model, null) };
        foreach (var run in new[] { slimmed, filters })
        {
            double masked = test.Accuracy(run.Model, asImages: true);
            run.Channels!.ShrinkInPlace();   // the dead channels go from the model's own layers
            models.Add((run.Name, run.Model, masked));
        }
        double[] latency = Latency(models.Select(m => m.Model).ToArray(), batch);
        for (int i = 0; i < models.Count; i++)
        {
            var (name, model, masked) = models[i];
            long parameters = model.parameters().Sum(p => p.numel());
            string channels = string.Join("-", model.named_children().Where(c => c.module is Conv2d).Select(c => ((Conv2d)c.module).out_channels));
            double accuracy = test.Accuracy(model, asImages: true);
            table.AddRow(name, $"{parameters:N0}", channels, $"{accuracy:P2}", masked is null ? "" : $"{masked:P2}", $"{latency[i]:F2}", $"{latency[0] / latency[i]:F2}x");
            rows.Add(new() { ["model"] = name, ["parameters"] = parameters, ["channels"] = channels, ["test_accuracy"] = accuracy,
                ["masked_test_accuracy"] = masked ?? accuracy, ["latency_ms"] = latency[i], ["speedup"] = latency[0] / latency[i] });
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLineInterpolated($"Total time {clock.Elapsed.TotalSeconds:F0} s.");
        bool same = rows.All(r => (double)r["test_accuracy"] == (double)r["masked_test_accuracy"]);
        if (!same)
            AnsiConsole.MarkupLine("[red]error:[/] a shrunk model classifies differently from its masked original.");
        if (summaryPath is not null)
            JsonSummary.Write(summaryPath, rows);
        return same ? 0 : 1;
    }

    private static PruningOptions Options(PruningSchedule schedule, IPruningCriterion criterion, ChannelGraph channels) => new()
    {
        Schedule = schedule,
        Criterion = criterion,
        Granularity = PruningGranularity.OutputChannels(LpNorm.L1),
        Targets = PruningTargets.Default.OfModuleType<Conv2d>(),
        Channels = channels,
    };

    private sealed record Trained(string Name, Sequential Model, ChannelGraph? Channels);

    /// <summary>conv(1→16)-BN-ReLU-pool, conv(16→32)-BN-ReLU-pool, conv(32→64)-BN-ReLU, global average pool, linear(64→10).</summary>
    private static Sequential Cnn(int seed) => ConvNets.ConvBn(seed);

    private static Trained Train(string name, int seed, int epochs, FashionMnist train, Func<ChannelGraph, PruningOptions>? prune, double l1)
    {
        var model = Cnn(seed);
        ChannelGraph channels;
        using (var example = train.Images.narrow(0, 0, 2).reshape(-1, 1, 28, 28)) channels = ChannelGraph.Trace(model, example);
        var optimizer = SafeOptim.Adam(model.parameters(), 2e-3);
        using var pruner = prune is null ? null : new GradualPruner(model, prune(channels), optimizer);
        var order = new Generator((ulong)seed);
        {
            using var progress = new TrainingProgress(name, (train.Count + BatchSize - 1) / BatchSize * epochs, pruner);
            for (int epoch = 0; epoch < epochs; epoch++)
            {
                model.train();
                using var permutation = torch.randperm(train.Count, generator: order);
                for (long start = 0; start < train.Count; start += BatchSize)
                {
                    using var scope = torch.NewDisposeScope();
                    var idx = permutation.narrow(0, start, Math.Min(BatchSize, train.Count - start));
                    optimizer.zero_grad();
                    var x = train.Images.index_select(0, idx).reshape(-1, 1, 28, 28);
                    var loss = nn.functional.cross_entropy(model.call(x), train.Labels.index_select(0, idx));
                    if (l1 > 0) loss = loss + channels.BatchNormL1Penalty(l1);
                    loss.backward();
                    optimizer.step();
                    pruner?.Step();
                    progress.Step(loss);
                }
            }
        }
        pruner?.Strip();
        model.eval();
        return new Trained(name, model, prune is null ? null : channels);
    }


    /// <summary>Median forward time of each model, measured in interleaved rounds in this process.</summary>
    private static double[] Latency(Sequential[] models, Tensor batch)
    {
        using var noGrad = torch.no_grad();
        var times = models.Select(_ => new List<double>()).ToArray();
        for (int round = 0; round < 40; round++)
            for (int m = 0; m < models.Length; m++)
            {
                using var scope = torch.NewDisposeScope();
                var sw = Stopwatch.StartNew();
                models[m].call(batch);
                if (round >= 5) times[m].Add(sw.Elapsed.TotalMilliseconds);
            }
        return times.Select(t => t.Order().ElementAt(t.Count / 2)).ToArray();
    }
}
