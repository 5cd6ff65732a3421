// The main demo: LeNet-300-100 on Fashion-MNIST, pruned gradually to 90 % with the cubic schedule of Zhu & Gupta
// (2017), next to a dense baseline trained the same way.
using System.CommandLine;
using System.Diagnostics;
using Pruning;
using Pruning.Criteria;
using Pruning.Interop;
using Pruning.Reporting;
using Pruning.Samples;
using Pruning.Scheduling;
using Pruning.Selection;
using Spectre.Console;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using Pruning.Optimizers;

var epochs = new Option<int>("--epochs") { Description = "Training epochs, for the pruned and the dense run alike.", DefaultValueFactory = _ => 10 };
var finalSparsity = new Option<double>("--final-sparsity") { Description = "Target sparsity s_f of the pruned weights, in [0, 1).", DefaultValueFactory = _ => 0.9 };
var global = new Option<bool>("--global") { Description = "Rank weights across all layers at once instead of pruning each layer to the target." };
var dataDir = new Option<string>("--data") { Description = "Directory with the Fashion-MNIST IDX files (.gz or plain).", DefaultValueFactory = _ => FashionMnist.DefaultDirectory };
var seed = new Option<int>("--seed") { Description = "Seed for weights and batch order.", DefaultValueFactory = _ => 1 };
var summaryJson = new Option<string?>("--summary-json") { Description = "Write a JSON summary of the run to this file." };
var batchSize = new Option<int>("--batch-size") { Description = "Mini-batch size.", DefaultValueFactory = _ => 128 };
var frequency = new Option<int>("--frequency") { Description = "Δt: steps between mask updates.", DefaultValueFactory = _ => 100 };
var trainLimit = new Option<int>("--train-limit") { Description = "Use only the first N training images (quick runs); 0 = all 60 000.", DefaultValueFactory = _ => 0 };
var skipDense = new Option<bool>("--skip-dense") { Description = "Do not train the dense baseline." };
var criterion = new Option<string>("--criterion")
{
    Description = "magnitude, taylor, fisher, random, or row-relative (a custom criterion defined in this sample).",
    DefaultValueFactory = _ => "magnitude",
};
criterion.AcceptOnlyFromAmong("magnitude", "taylor", "fisher", "random", "row-relative");
var dryRun = new Option<bool>("--dry-run") { Description = "Print the pruning plan (every update step and its target per layer) and exit." };
var torchHealth = new Option<bool>("--torch-health")
{
    Description = "Check libtorch against known answers on this CPU (TorchHealth.Ensure), print every check and exit: 0 when all pass, 1 otherwise.",
};

var root = new RootCommand("Gradual magnitude pruning of LeNet-300-100 on Fashion-MNIST, against a dense baseline.")
{
    epochs, finalSparsity, global, dataDir, seed, summaryJson, batchSize, frequency, trainLimit, skipDense, dryRun, criterion, torchHealth,
};
root.SetAction(parse =>
{
    TorchHealthReport health = TorchHealth.Ensure();   // libtorch's known answers first: one warning line if this CPU gets them wrong (docs/reference/installation.md)
    if (parse.GetValue(torchHealth))
    {
        Console.WriteLine(health);
        return health.Healthy ? 0 : 1;
    }
    var settings = new Settings(parse.GetValue(epochs), parse.GetValue(finalSparsity), parse.GetValue(global), parse.GetValue(dataDir)!,
        parse.GetValue(seed), parse.GetValue(summaryJson), parse.GetValue(batchSize), parse.GetValue(frequency), parse.GetValue(trainLimit), parse.GetValue(skipDense), parse.GetValue(dryRun), parse.GetValue(criterion)!);
    try
    {
        return Demo.Run(settings);
    }
    catch (Exception e) when (e is FileNotFoundException or InvalidDataException or ArgumentException)
    {
        AnsiConsole.MarkupLineInterpolated($"[red]error:[/] {e.Message}");
        return 2;
    }
});
return root.Parse(args).Invoke();

internal sealed record Settings(int Epochs, double FinalSparsity, bool Global, string Data, int Seed, string? SummaryJson,
    int BatchSize, int Frequency, int TrainLimit, bool SkipDense, bool DryRun, string Criterion);

/// <summary>
/// How to plug in a criterion of your own: |w| relative to the largest |w| of its row, so that every output neuron
/// keeps its own strongest inputs (plain magnitude can empty a row whose weights are all small).
/// </summary>
internal sealed class RowRelativeMagnitude : IPruningCriterion
{
    public Tensor Score(string parameterName, Tensor weight)
    {
        // Scalars held in variables until after the calls that read them (see the README's "Known issue").
        using var epsilon = 1e-12.ToScalar();
        using var one = 1.ToScalar();
        using var magnitude = weight.abs();
        var (rowMax, indices) = magnitude.max(1, keepdim: true);
        using (indices)
        using (rowMax)
        using (var denominator = rowMax.add(epsilon, one))
            return magnitude.div(denominator);
    }

    public override string ToString() => "RowRelativeMagnitude";
}

internal static class Demo
{
    public static int Run(Settings s)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(s.Epochs, "--epochs");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(s.BatchSize, "--batch-size");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(s.Frequency, "--frequency");
        ArgumentOutOfRangeException.ThrowIfNegative(s.TrainLimit, "--train-limit");

        var clock = Stopwatch.StartNew();
        FashionMnist train = FashionMnist.Load(s.Data, train: true), test = FashionMnist.Load(s.Data, train: false);
        if (s.TrainLimit > 0 && s.TrainLimit < train.Count)
            train = train.Take(s.TrainLimit);
        long stepsPerEpoch = (train.Count + s.BatchSize - 1) / s.BatchSize;
        long totalSteps = stepsPerEpoch * s.Epochs;

        // As in the paper: let the network train dense first, prune over the middle of training, and leave the last
        // ~30 % of the steps for recovery at the final sparsity.
        long begin = Math.Min(stepsPerEpoch, totalSteps / 10);
        long end = Math.Max(begin + 1, (long)(totalSteps * 0.7));
        var schedule = new PolynomialDecaySchedule(0, s.FinalSparsity, begin, end, Math.Min(s.Frequency, end - begin), power: 3);

        AnsiConsole.MarkupLineInterpolated($"[bold]LeNet-300-100 on Fashion-MNIST[/]: {train.Count:N0} training / {test.Count:N0} test images, {s.Epochs} epochs of {stepsPerEpoch} steps (batch {s.BatchSize}), torch threads {torch.get_num_threads()}.");
        AnsiConsole.MarkupLineInterpolated($"Schedule: {schedule}, {(s.Global ? "global" : "layer-wise")} ranking by {s.Criterion}.");
        IPruningCriterion criterion = s.Criterion switch
        {
            "taylor" => new TaylorCriterion(),
            "fisher" => new FisherCriterion(),
            "random" => new RandomCriterion((ulong)s.Seed),
            "row-relative" => new RowRelativeMagnitude(),
            _ => new MagnitudeCriterion(),
        };
        var options = new PruningOptions { Schedule = schedule, Scope = s.Global ? PruningScope.Global : PruningScope.LayerWise, Criterion = criterion };
        if (s.DryRun)
        {
            using var planner = new GradualPruner(Model(s.Seed), options);
            Console.WriteLine(planner.Plan());
            return 0;
        }

        var pruned = Train(s, train, test, stepsPerEpoch, options);
        var dense = s.SkipDense ? null : Train(s, train, test, stepsPerEpoch, prune: null);

        PruningReport report = pruned.Report!;
        var table = new Table().Title("Per-layer sparsity after strip (measured from the weights)")
            .AddColumns("parameter", "shape", "target", "sparsity", "nnz", "total");
        foreach (var l in report.Layers)
            table.AddRow(l.Name, string.Join("x", l.Shape), $"{l.TargetSparsity:P2}", $"{l.Sparsity:P2}", $"{l.Nonzero:N0}", $"{l.Total:N0}");
        table.AddRow("[bold]total[/]", "", $"{s.FinalSparsity:P2}", $"[bold]{report.Sparsity:P2}[/]", $"{report.Nonzero:N0}", $"{report.Total:N0}");
        foreach (int c in new[] { 2, 3, 4, 5 }) table.Columns[c].RightAligned();
        AnsiConsole.Write(table);

        var results = new Table().Title("Test accuracy").AddColumns("model", "weights (nnz)", "test accuracy");
        if (dense is not null)
            results.AddRow("dense", $"{report.Total:N0}", $"{dense.Accuracy:P2}");
        results.AddRow($"pruned to {report.Sparsity:P1}", $"{report.Nonzero:N0}", $"{pruned.Accuracy:P2}");
        AnsiConsole.Write(results);
        AnsiConsole.MarkupLineInterpolated($"Masked weights that are not exactly zero: {report.MaskedNonzero}. Total time {clock.Elapsed.TotalSeconds:F0} s.");

        if (s.SummaryJson is not null)
        {
            var summary = new Dictionary<string, object?>
            {
                ["criterion"] = s.Criterion,
                ["target_sparsity"] = s.FinalSparsity,
                ["final_sparsity"] = report.Sparsity,
                ["test_accuracy"] = pruned.Accuracy,
                ["dense_test_accuracy"] = dense?.Accuracy,
                ["steps"] = pruned.Steps,
                ["masked_nonzero_count"] = report.MaskedNonzero,
                ["nonzero_weights"] = report.Nonzero,
                ["total_weights"] = report.Total,
                ["seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 1),
            };
            JsonSummary.Write(s.SummaryJson, summary);
            AnsiConsole.MarkupLineInterpolated($"Summary written to {s.SummaryJson}.");
        }
        return report.MaskedNonzero == 0 ? 0 : 1;
    }

    private sealed record Result(double Accuracy, long Steps, PruningReport? Report);

    private static Result Train(Settings s, FashionMnist train, FashionMnist test, long stepsPerEpoch, PruningOptions? prune)
    {
        var model = Model(s.Seed);
        var optimizer = SafeOptim.Adam(model.parameters(), 1e-3);
        using var pruner = prune is null ? null : new GradualPruner(model, prune, optimizer);
        var order = new Generator((ulong)s.Seed);
        string label = prune is null ? "dense " : "pruned";
        long step = 0;

            {
                using var progress = new TrainingProgress(label, stepsPerEpoch * s.Epochs, pruner);
                for (int epoch = 0; epoch < s.Epochs; epoch++)
                {
                    using var permutation = torch.randperm(train.Count, generator: order);
                    for (long start = 0; start < train.Count; start += s.BatchSize, step++)
                    {
                        using var scope = torch.NewDisposeScope();
                        var idx = permutation.narrow(0, start, Math.Min(s.BatchSize, train.Count - start));
                        optimizer.zero_grad();
                        var loss = nn.functional.cross_entropy(model.call(train.Images.index_select(0, idx)), train.Labels.index_select(0, idx));
                        loss.backward();
                        optimizer.step();
                        pruner?.Step();
                        progress.Step(loss);
                    }
                }
            }

        PruningReport? report = pruner?.Strip();
        return new Result(test.Accuracy(model), step, report);
    }

    /// <summary>LeNet-300-100: 784-300-100-10 with ReLU.</summary>
    private static Sequential Model(int seed)
    {
        torch.manual_seed(seed);
        return nn.Sequential(
            ("fc1", nn.Linear(784, 300)), ("relu1", nn.ReLU()),
            ("fc2", nn.Linear(300, 100)), ("relu2", nn.ReLU()),
            ("fc3", nn.Linear(100, 10)));
    }

}
