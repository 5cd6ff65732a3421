// Choosing how much to prune where, on LeNet-300-100 / Fashion-MNIST:
//  1. sensitivity scan → sensitivity.csv + sensitivity.png, per-layer ratios for the same total as a uniform run,
//     both trained with the cubic schedule;
//  2. one-shot vs iterative vs gradual pruning of a trained model to the same sparsity, same fine-tuning budget;
//  3. short NetAdapt runs to a latency budget: unstructured, timed on the sparse runtime's kernels; and over
//     channels, timed with TorchSharp, ending in a physically smaller model;
//  4. the same on a small CNN: scans by weight and by filter → sensitivity-cnn.csv/png, uniform vs derived ratios,
//     and NetAdapt on the sparse runtime (where sparse convolutions run as direct sparse convolutions).
using System.CommandLine;
using System.Globalization;
using Pruning;
using Pruning.Analysis;
using Pruning.Export;
using Pruning.Interop;
using Pruning.Samples;
using Pruning.Scheduling;
using Pruning.Sparse;
using Pruning.Sparse.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using Pruning.Optimizers;

TorchHealth.MakeOpenMpPassive();

var quickOption = new Option<bool>("--quick") { Description = "A short run (about half a minute): fewer images, epochs, ratios and timing runs." };
var seedsOption = new Option<int>("--seeds") { Description = "Seeds per trained configuration (default 3, or 1 with --quick)." };
var seedOption = new Option<int>("--seed") { Description = "The first seed.", DefaultValueFactory = _ => 1 };
var sparsityOption = new Option<double>("--sparsity") { Description = "The total sparsity the allocations aim for, in [0, 1).", DefaultValueFactory = _ => 0.9 };
var dataOption = new Option<string>("--data") { Description = "Directory with the Fashion-MNIST IDX files.", DefaultValueFactory = _ => FashionMnist.DefaultDirectory };
var outOption = new Option<string>("--out") { Description = "Directory for the CSV and PNG files.", DefaultValueFactory = _ => Path.Combine("out", "sensitivity-scan") };
var summaryOption = new Option<string?>("--summary-json") { Description = "Write the results as JSON to this file." };
var noCnnOption = new Option<bool>("--no-cnn") { Description = "Skip the CNN part." };
var root = new RootCommand("Sensitivity scan, derived vs uniform per-layer ratios, one-shot vs iterative vs gradual, and NetAdapt, on LeNet-300-100 and a small CNN (Fashion-MNIST).")
{
    quickOption, seedsOption, seedOption, sparsityOption, dataOption, outOption, summaryOption, noCnnOption,
};
root.SetAction(parse => Run(parse.GetValue(quickOption), parse.GetValue(seedsOption), parse.GetValue(seedOption), parse.GetValue(sparsityOption),
    parse.GetValue(dataOption)!, parse.GetValue(outOption)!, parse.GetValue(summaryOption), !parse.GetValue(noCnnOption)));
return root.Parse(args).Invoke();

static int Run(bool quick, int seeds, int seed0, double total, string data, string outDir, string? summaryJson, bool cnnPart)
{
TorchHealth.Ensure();   // libtorch's known answers first: one warning line if this CPU gets them wrong (docs/reference/installation.md)
if (seeds <= 0) seeds = quick ? 1 : 3;
if (!(total >= 0 && total < 1))
{
    Console.Error.WriteLine($"--sparsity must be in [0, 1); got {total}.");
    return 2;
}

FashionMnist all, test;
try
{
    all = FashionMnist.Load(data, train: true);
    test = FashionMnist.Load(data, train: false);
}
catch (FileNotFoundException e)
{
    Console.Error.WriteLine(e.Message);
    return 2;
}
Directory.CreateDirectory(outDir);
// Validation = the last 5,000 training images (the scan and NetAdapt never look at the test set).
long trainCount = quick ? 12_000 : 55_000, validCount = quick ? 2_000 : 5_000;
FashionMnist train = all.Take(trainCount), valid = all.Slice(all.Count - validCount, validCount), testSet = test;
int epochs = quick ? 2 : 6;
long stepsPerEpoch = (trainCount + 127) / 128, trainSteps = epochs * stepsPerEpoch;
var summary = new Dictionary<string, object>();
Console.WriteLine($"{(quick ? "Quick run" : "Full run")}: {trainCount:N0} training images, {validCount:N0} validation, {epochs} epochs per training, {seeds} seed(s), target {total:P0}.");

// ── 1. Sensitivity scan ────────────────────────────────────────────────────────────────────────────────────────
var dense = Mlp(seed0);
Train(dense, train, trainSteps, null, seed0);
double[] ratios = quick ? [0.5, 0.8, 0.9, 0.95, 0.98] : [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98];
var scan = SensitivityScan.Run(dense, m => valid.Accuracy((Sequential)m), new SensitivityOptions { Ratios = ratios });
Console.WriteLine($"\nSensitivity (validation accuracy, one layer pruned at a time; dense model {valid.Accuracy(dense):P2}):\n{scan}");
string csv = Path.Combine(outDir, "sensitivity.csv"), png = Path.Combine(outDir, "sensitivity.png");
File.WriteAllText(csv, scan.ToCsv());
Plot(scan, png);
Console.WriteLine($"Wrote {csv} and {png}.");

IReadOnlyDictionary<string, double> derived = scan.SparsitiesForTotal(total);
Console.WriteLine($"\nPer-layer ratios for {total:P0} in total: " + string.Join(", ", derived.Select(kv => $"{kv.Key} {kv.Value:P1}")));
var schedule = new PolynomialDecaySchedule(0, total, beginStep: stepsPerEpoch, endStep: trainSteps * 7 / 10, frequency: Math.Min(100, Math.Max(1, trainSteps / 30)));
var uniformAcc = new List<double>();
var derivedAcc = new List<double>();
for (int s = seed0; s < seed0 + seeds; s++)
{
    uniformAcc.Add(TrainPruned(new PruningOptions { Schedule = schedule }, s));
    derivedAcc.Add(TrainPruned(new PruningOptions { Schedule = schedule, Overrides = ParameterOverride.FinalSparsities(derived) }, s));
}
Console.WriteLine($"\n{"allocation",-28} {"per-layer sparsity (fc1 / fc2 / fc3)",-38} test accuracy ({seeds} seed(s))");
Console.WriteLine($"{"uniform",-28} {$"{total:P1} / {total:P1} / {total:P1}",-38} {Stats(uniformAcc)}");
Console.WriteLine($"{"sensitivity-derived",-28} {string.Join(" / ", derived.Values.Select(v => v.ToString("P1", CultureInfo.InvariantCulture))),-38} {Stats(derivedAcc)}");
summary["sensitivity"] = new Dictionary<string, object> { ["ratios"] = derived, ["uniform_accuracy"] = uniformAcc, ["derived_accuracy"] = derivedAcc };

// ── 2. One-shot vs iterative vs gradual, from the trained dense model, same fine-tuning budget ────────────────
long budget = quick ? stepsPerEpoch : 2 * stepsPerEpoch;
var methods = new (string Name, PruningSchedule Schedule)[]
{
    ("one-shot + fine-tune", new OneShotSchedule(total)),
    ("iterative (4 stages)", new IterativeSchedule(Stages(total), 0, budget / 5)),
    ("gradual (cubic)", new PolynomialDecaySchedule(0, total, 0, budget * 7 / 10, Math.Max(1, budget / 30))),
};
Console.WriteLine($"\nFrom the trained dense model ({testSet.Accuracy(dense):P2} test), to {total:P0} with {budget} fine-tuning steps each:");
var methodRows = new Dictionary<string, object>();
foreach (var (name, sched) in methods)
{
    var accs = new List<double>();
    for (int s = seed0; s < seed0 + seeds; s++)
    {
        var model = Copy(dense);
        Train(model, train, budget, o => new GradualPruner(model, new PruningOptions { Schedule = sched }, o), s);
        accs.Add(testSet.Accuracy(model));
    }
    Console.WriteLine($"  {name,-24} {Stats(accs)}");
    methodRows[name] = accs;
}
summary["one_shot_vs_iterative_vs_gradual"] = methodRows;

// ── 3. NetAdapt to a latency budget (batch 1, the sparse runtime's kernels) ─────────────────────────────────
var table = LatencyTable.MeasureSparse(dense, new FeatureShape(784), [0.5, 0.7, 0.8, 0.9, 0.95, 0.98], batch: 1, runs: quick ? 15 : 41);
Console.WriteLine($"\nMeasured latency table:\n{table}");
var adapted = Copy(dense);
int shortTerm = quick ? 30 : 100;
// NetAdapt's short-term fine-tune of one proposal (both variants): Adam for shortTerm steps, re-masking after each
// step, then the validation accuracy.
double ShortTermFineTune(NetAdaptProposal proposal)
{
    var optimizer = SafeOptim.Adam(proposal.Model.parameters(), 5e-4);
    var order = new Generator(7);
    using var permutation = torch.randperm(train.Count, generator: order);
    for (long step = 0; step < shortTerm; step++)
    {
        using var scope = torch.NewDisposeScope();
        var idx = permutation.narrow(0, step * 128 % (train.Count - 128), 128);
        optimizer.zero_grad();
        var model = (Sequential)proposal.Model;
        var x = train.Images.index_select(0, idx);
        nn.functional.cross_entropy(model.call(IsCnn(model) ? x.reshape(-1, 1, 28, 28) : x), train.Labels.index_select(0, idx)).backward();
        optimizer.step();
        proposal.Remask();
    }
    double accuracy = valid.Accuracy((Sequential)proposal.Model, asImages: IsCnn((Sequential)proposal.Model));
    proposal.Model.train();
    return accuracy;
}
var netadapt = NetAdapt.Run(adapted, table, ShortTermFineTune, new NetAdaptOptions { TargetCostFraction = 0.5, ReductionPerIteration = 0.1 });
Console.WriteLine($"\nNetAdapt (short-term fine-tune {shortTerm} steps per proposal, metric = validation accuracy):\n{netadapt}");
// Long-term fine-tune with the found per-layer sparsities held by a pruner.
Train(adapted, train, budget, o => new GradualPruner(adapted, new PruningOptions
{
    Schedule = new ConstantSparsitySchedule(netadapt.Sparsities.Values.Max(), 0, 100),
    Overrides = ParameterOverride.FinalSparsities(netadapt.Sparsities),
}, o), seed0);
double adaptedAcc = testSet.Accuracy(adapted);
double measuredDense = RunTime(SparseExport.ToSparseModel(dense, new FeatureShape(784)));
double measuredAdapted = RunTime(SparseExport.ToSparseModel(adapted, new FeatureShape(784)));
Console.WriteLine($"After long-term fine-tuning: test accuracy {adaptedAcc:P2} (dense {testSet.Accuracy(dense):P2}); " +
    $"whole exported model at batch 1: {measuredAdapted * 1000:F1} µs vs dense {measuredDense * 1000:F1} µs ({measuredDense / measuredAdapted:F2}× faster; table estimate {netadapt.DenseCost.Ratio(netadapt.FinalCost):F2}×).");
summary["netadapt"] = new Dictionary<string, object>
{
    ["iterations"] = netadapt.Iterations, ["sparsities"] = netadapt.Sparsities, ["budget_met"] = netadapt.BudgetMet,
    ["table_dense_ms"] = netadapt.DenseCost.Value, ["table_final_ms"] = netadapt.FinalCost.Value,
    ["measured_dense_ms"] = measuredDense, ["measured_final_ms"] = measuredAdapted, ["test_accuracy"] = adaptedAcc,
};

// ── 3b. NetAdapt with channels and TorchSharp latencies (batch 64): the model gets physically smaller ─────────────
var channelModel = Copy(dense);
Pruning.Structure.ChannelGraph channelGraph;
using (var example = test.Images.narrow(0, 0, 2).contiguous()) channelGraph = Pruning.Structure.ChannelGraph.Trace(channelModel, example);
var channelTable = LatencyTable.MeasureDense(channelGraph, batch: 64, runs: quick ? 15 : 41);
var channelResult = ChannelNetAdapt.Run(channelModel, channelGraph, channelTable, ShortTermFineTune, new NetAdaptOptions { TargetCostFraction = 0.5, ReductionPerIteration = 0.1 });
Console.WriteLine($"\nNetAdapt over channels (TorchSharp latency table, batch 64, {channelTable.Measured.Count} entries timed):\n{channelResult}");
// Long-term fine-tune with the channels held (row granularity, coupled bias), then remove them for real.
Train(channelModel, train, budget, o => new GradualPruner(channelModel, new PruningOptions
{
    Schedule = new ConstantSparsitySchedule(0.5, 0, 100),
    Targets = Pruning.Targets.PruningTargets.Default.Include([.. channelGraph.Weights]),
    Granularity = Pruning.Grouping.PruningGranularity.OutputChannels(),
    Channels = channelGraph,
    Overrides = ParameterOverride.FinalSparsities(channelResult.Sparsities),
}, o), seed0);
double channelMaskedAcc = testSet.Accuracy(channelModel);
channelGraph.ShrinkInPlace();
var shrunk = channelModel;
double shrunkAcc = testSet.Accuracy(shrunk);
double TorchTime(Sequential m)
{
    using var x = test.Images.narrow(0, 0, 64).contiguous();
    using var _ = torch.no_grad();
    m.eval();
    for (int i = 0; i < 30; i++) m.call(x).Dispose();
    var times = new List<double>();
    for (int i = 0; i < 400; i++)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        m.call(x).Dispose();
        times.Add(System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMilliseconds);
    }
    times.Sort();
    return times[times.Count / 2];
}
double denseTorch = TorchTime(dense), shrunkTorch = TorchTime(shrunk);
Console.WriteLine($"After long-term fine-tuning and Shrink: {string.Join(" / ", shrunk.named_parameters().Where(p => p.parameter.dim() == 2).Select(p => $"{p.name} {p.parameter.shape[1]}→{p.parameter.shape[0]}"))}; " +
    $"test accuracy {shrunkAcc:P2} (masked {channelMaskedAcc:P2}, dense {testSet.Accuracy(dense):P2}); TorchSharp at batch 64: {shrunkTorch:F3} ms vs dense {denseTorch:F3} ms ({denseTorch / shrunkTorch:F2}× faster; table estimate {channelResult.DenseCost.Ratio(channelResult.FinalCost):F2}×).");
summary["channel_netadapt"] = new Dictionary<string, object>
{
    ["iterations"] = channelResult.Iterations, ["channels"] = channelResult.Channels!, ["budget_met"] = channelResult.BudgetMet,
    ["table_dense_ms"] = channelResult.DenseCost.Value, ["table_final_ms"] = channelResult.FinalCost.Value,
    ["measured_dense_ms"] = denseTorch, ["measured_final_ms"] = shrunkTorch, ["test_accuracy"] = shrunkAcc,
};
// ── 4. The same questions on a small CNN ─────────────────────────────────────────────────────────────────────────
if (cnnPart)
{
    long cnnTrainCount = quick ? 4_000 : 20_000;
    FashionMnist cnnTrain = all.Take(cnnTrainCount);
    int cnnEpochs = quick ? 1 : 3;
    long cnnStepsPerEpoch = (cnnTrainCount + 127) / 128, cnnSteps = cnnEpochs * cnnStepsPerEpoch;
    Console.WriteLine($"\n── CNN (conv 1→16, conv 16→32, fc 1568→64, fc 64→10): {cnnTrainCount:N0} training images, {cnnEpochs} epoch(s) per training ──");
    var cnn = Cnn(seed0);
    Train(cnn, cnnTrain, cnnSteps, null, seed0);
    double CnnValid(nn.Module m) => valid.Accuracy((Sequential)m, asImages: true);
    Console.WriteLine($"Dense CNN: validation {CnnValid(cnn):P2}, test {testSet.Accuracy(cnn, asImages: true):P2}.");

    // By weight (every layer) and by filter (the convolutions, L1 norm of each output channel's weights).
    var byWeight = SensitivityScan.Run(cnn, CnnValid, new SensitivityOptions { Ratios = ratios });
    var byFilter = SensitivityScan.Run(cnn, CnnValid, new SensitivityOptions
    {
        Ratios = quick ? [0.25, 0.5, 0.75] : [0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875],
        Targets = Pruning.Targets.PruningTargets.Default.OfModuleType<Conv2d>(),
        Granularity = Pruning.Grouping.PruningGranularity.OutputChannels(Pruning.Grouping.LpNorm.L1),
    });
    Console.WriteLine($"\nCNN sensitivity by weight:\n{byWeight}\nCNN sensitivity by filter (whole output channels, L1 norm):\n{byFilter}");
    string cnnCsv = Path.Combine(outDir, "sensitivity-cnn.csv"), cnnPng = Path.Combine(outDir, "sensitivity-cnn.png");
    string filterCsv = Path.Combine(outDir, "sensitivity-cnn-filters.csv"), filterPng = Path.Combine(outDir, "sensitivity-cnn-filters.png");
    File.WriteAllText(cnnCsv, byWeight.ToCsv());
    File.WriteAllText(filterCsv, byFilter.ToCsv());
    Plot(byWeight, cnnPng, "Sensitivity by weight: one layer pruned at a time (CNN, Fashion-MNIST)");
    Plot(byFilter, filterPng, "Sensitivity by filter: one conv layer's channels removed at a time (CNN)");
    Console.WriteLine($"Wrote {cnnCsv}, {cnnPng}, {filterCsv} and {filterPng}.");

    IReadOnlyDictionary<string, double> cnnDerived = byWeight.SparsitiesForTotal(total);
    Console.WriteLine($"\nPer-layer ratios for {total:P0} in total: " + string.Join(", ", cnnDerived.Select(kv => $"{kv.Key} {kv.Value:P1}")));
    var cnnSchedule = new PolynomialDecaySchedule(0, total, beginStep: cnnStepsPerEpoch / 2, endStep: cnnSteps * 7 / 10, frequency: Math.Min(100, Math.Max(1, cnnSteps / 30)));
    var cnnUniform = new List<double>();
    var cnnDerivedAcc = new List<double>();
    for (int s = seed0; s < seed0 + seeds; s++)
    {
        foreach (var (options, into) in new[] { (new PruningOptions { Schedule = cnnSchedule }, cnnUniform), (new PruningOptions { Schedule = cnnSchedule, Overrides = ParameterOverride.FinalSparsities(cnnDerived) }, cnnDerivedAcc) })
        {
            var model = Cnn(s);
            Train(model, cnnTrain, cnnSteps, o => new GradualPruner(model, options, o), s);
            into.Add(testSet.Accuracy(model, asImages: true));
        }
    }
    Console.WriteLine($"\n{"CNN allocation",-28} {"conv1 / conv2 / fc1 / fc2",-40} test accuracy ({seeds} seed(s))");
    Console.WriteLine($"{"uniform",-28} {string.Join(" / ", cnnDerived.Keys.Select(_ => total.ToString("P1", CultureInfo.InvariantCulture))),-40} {Stats(cnnUniform)}");
    Console.WriteLine($"{"sensitivity-derived",-28} {string.Join(" / ", cnnDerived.Values.Select(v => v.ToString("P1", CultureInfo.InvariantCulture))),-40} {Stats(cnnDerivedAcc)}");

    // NetAdapt on the sparse runtime: its latency table times the convolutions as the exported model runs them
    // (direct sparse convolution for sparse stride-1 filters).
    var cnnShape = new FeatureShape(1, 28, 28);
    var cnnTable = LatencyTable.MeasureSparse(cnn, cnnShape, [0.5, 0.7, 0.8, 0.9, 0.95], batch: 1, runs: quick ? 15 : 41);
    Console.WriteLine($"\nCNN latency table (sparse runtime, batch 1):\n{cnnTable}");
    var cnnAdapted = Copy(cnn);
    var cnnNetAdapt = NetAdapt.Run(cnnAdapted, cnnTable, ShortTermFineTune, new NetAdaptOptions { TargetCostFraction = 0.5, ReductionPerIteration = 0.1 });
    Console.WriteLine($"\nCNN NetAdapt (short-term fine-tune {shortTerm} steps per proposal):\n{cnnNetAdapt}");
    Train(cnnAdapted, cnnTrain, quick ? cnnStepsPerEpoch : 2 * cnnStepsPerEpoch, o => new GradualPruner(cnnAdapted, new PruningOptions
    {
        Schedule = new ConstantSparsitySchedule(cnnNetAdapt.Sparsities.Values.Max(), 0, 100),
        Overrides = ParameterOverride.FinalSparsities(cnnNetAdapt.Sparsities),
    }, o), seed0);
    double cnnAdaptedAcc = testSet.Accuracy(cnnAdapted, asImages: true);
    SparseModel cnnDenseRuntime = SparseExport.ToSparseModel(cnn, cnnShape), cnnAdaptedRuntime = SparseExport.ToSparseModel(cnnAdapted, cnnShape);
    double cnnDenseMs = RunTime(cnnDenseRuntime), cnnAdaptedMs = RunTime(cnnAdaptedRuntime);
    Console.WriteLine($"After long-term fine-tuning: test accuracy {cnnAdaptedAcc:P2} (dense {testSet.Accuracy(cnn, asImages: true):P2}); " +
        $"exported model at batch 1: {cnnAdaptedMs * 1000:F1} µs vs dense {cnnDenseMs * 1000:F1} µs ({cnnDenseMs / cnnAdaptedMs:F2}× faster; table estimate {cnnNetAdapt.DenseCost.Ratio(cnnNetAdapt.FinalCost):F2}×).");
    Console.WriteLine("Exported layers: " + string.Join("; ", cnnAdaptedRuntime.Layers.Where(l => l is Conv2dLayer or LinearLayer).Select(l => l.Describe())));
    summary["cnn"] = new Dictionary<string, object>
    {
        ["derived_ratios"] = cnnDerived, ["uniform_accuracy"] = cnnUniform, ["derived_accuracy"] = cnnDerivedAcc,
        ["netadapt_iterations"] = cnnNetAdapt.Iterations, ["netadapt_sparsities"] = cnnNetAdapt.Sparsities, ["netadapt_budget_met"] = cnnNetAdapt.BudgetMet,
        ["netadapt_test_accuracy"] = cnnAdaptedAcc, ["measured_dense_ms"] = cnnDenseMs, ["measured_final_ms"] = cnnAdaptedMs,
    };
}

if (summaryJson is not null)
    JsonSummary.Write(summaryJson, summary);
return 0;

double TrainPruned(PruningOptions options, int seed)
{
    var model = Mlp(seed);
    Train(model, train, trainSteps, o => new GradualPruner(model, options, o), seed);
    return testSet.Accuracy(model);
}
}

static double[] Stages(double final) => [final * 0.5 / 0.9, final * 0.7 / 0.9, final * 0.8 / 0.9, final];

static Sequential Mlp(int seed)
{
    torch.manual_seed(seed);
    return nn.Sequential(("fc1", nn.Linear(784, 300)), ("relu1", nn.ReLU()), ("fc2", nn.Linear(300, 100)), ("relu2", nn.ReLU()), ("fc3", nn.Linear(100, 10)));
}

/// <summary>conv(1→16)-ReLU-pool, conv(16→32)-ReLU-pool, fc(1568→64)-ReLU, fc(64→10); exports to the sparse runtime as is.</summary>
static Sequential Cnn(int seed)
{
    torch.manual_seed(seed);
    return nn.Sequential(
        ("conv1", nn.Conv2d(1, 16, 3, padding: 1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(16, 32, 3, padding: 1)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("flat", nn.Flatten()), ("fc1", nn.Linear(32 * 7 * 7, 64)), ("relu3", nn.ReLU()), ("fc2", nn.Linear(64, 10)));
}

static bool IsCnn(Sequential model) => model.named_children().Any(c => c.module is Conv2d);

static Sequential Copy(Sequential source)
{
    var copy = IsCnn(source) ? Cnn(0) : Mlp(0);
    using var _ = torch.no_grad();
    foreach (var ((_, to), (_, from)) in copy.named_parameters().Zip(source.named_parameters())) to.copy_(from);
    return copy;
}

/// <summary>Adam (lr 1e-3), batch 128, reshuffled every pass; the pruner (if any) is made with the optimizer so its state is cleaned, and stripped at the end.</summary>
static void Train(Sequential model, FashionMnist data, long steps, Func<optim.Optimizer, GradualPruner>? makePruner, int seed)
{
    var optimizer = SafeOptim.Adam(model.parameters(), 1e-3);
    using var pruner = makePruner?.Invoke(optimizer);
    bool cnn = IsCnn(model);
    model.train();
    var order = new Generator((ulong)seed);
    Tensor permutation = torch.randperm(data.Count, generator: order);
    long position = 0;
    using var progress = new TrainingProgress(cnn ? "CNN" : "MLP", steps, pruner);
    for (long step = 0; step < steps; step++, position += 128)
    {
        if (position + 128 > data.Count) { permutation.Dispose(); permutation = torch.randperm(data.Count, generator: order); position = 0; }
        using var scope = torch.NewDisposeScope();
        var idx = permutation.narrow(0, position, 128);
        optimizer.zero_grad();
        var x = data.Images.index_select(0, idx);
        var loss = nn.functional.cross_entropy(model.call(cnn ? x.reshape(-1, 1, 28, 28) : x), data.Labels.index_select(0, idx));
        loss.backward();
        optimizer.step();
        pruner?.Step();
        progress.Step(loss);
    }
    permutation.Dispose();
    pruner?.Strip();
}

static string Stats(List<double> values)
{
    double mean = values.Average();
    double sd = values.Count > 1 ? Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1)) : 0;
    return values.Count > 1 ? $"{mean:P2} ± {sd * 100:F2} ({string.Join(", ", values.Select(v => v.ToString("P2", CultureInfo.InvariantCulture)))})" : $"{mean:P2}";
}

static double RunTime(SparseModel model)
{
    var x = new float[model.InputShape.Size];
    var y = new float[model.OutputShape.Size];
    for (int i = 0; i < 200; i++) model.Run(x, y);
    var times = new List<double>();
    for (int i = 0; i < 2000; i++)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        model.Run(x, y);
        times.Add(System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMilliseconds);
    }
    times.Sort();
    return times[times.Count / 2];
}

static void Plot(SensitivityResult scan, string path, string title = "Sensitivity: one layer pruned at a time (LeNet-300-100, Fashion-MNIST)")
{
    var plot = new ScottPlot.Plot();
    foreach (var layer in scan.Layers)
    {
        double[] xs = [0, .. layer.Points.Select(p => p.Ratio * 100)];
        double[] ys = [scan.Baseline * 100, .. layer.Points.Select(p => p.Metric * 100)];
        var line = plot.Add.Scatter(xs, ys);
        line.LegendText = $"{layer.Name} ({layer.Size:N0})";
    }
    plot.Add.HorizontalLine(scan.Baseline * 100).LegendText = "dense";
    plot.Title(title);
    plot.XLabel("pruning ratio of that layer (%)");
    plot.YLabel("validation accuracy (%)");
    plot.ShowLegend(ScottPlot.Alignment.LowerLeft);
    plot.SavePng(path, 900, 600);
}
