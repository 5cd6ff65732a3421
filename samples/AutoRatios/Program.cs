// Per-layer ratios by AMC (a DDPG agent, He et al. 2018) against uniform, sensitivity-derived, NetAdapt and global
// magnitude ratios, on the conv-BN CNN (Fashion-MNIST): a 50 % FLOPs budget by channels and a 90 % non-zero budget
// by weights; every method's ratios then get the same fine-tuning, and the test set is read once, at the end.
using System.CommandLine;
using System.Globalization;
using Pruning;
using Pruning.Analysis;
using Pruning.Analysis.Amc;
using Pruning.Grouping;
using Pruning.Interop;
using Pruning.Samples;
using Pruning.Scheduling;
using Pruning.Selection;
using Pruning.Structure;
using Pruning.Targets;
using TorchSharp.Modules;

TorchHealth.MakeOpenMpPassive();

var quickOption = new Option<bool>("--quick") { Description = "A short run for CI: less data, 40 AMC episodes, one seed, a short fine-tune." };
var seedsOption = new Option<int>("--seeds") { Description = "Seeds per method (AMC's search seed and the fine-tuning order).", DefaultValueFactory = _ => 3 };
var episodesOption = new Option<int>("--episodes") { Description = "AMC episodes, warm-up included (the paper: 400, of which 100 warm-up).", DefaultValueFactory = _ => 400 };
var fineTuneOption = new Option<int>("--finetune-steps") { Description = "Fine-tuning steps after each method's ratios are applied.", DefaultValueFactory = _ => 1500 };
var dataOption = new Option<string>("--data") { Description = "Directory with the Fashion-MNIST IDX files.", DefaultValueFactory = _ => FashionMnist.DefaultDirectory };
var outOption = new Option<string>("--out") { Description = "Directory for the dense model, the episode logs (CSV) and the reward/budget plots (PNG).", DefaultValueFactory = _ => Path.Combine("out", "auto-ratios") };
var noRecalibrationOption = new Option<bool>("--no-recalibration") { Description = "Score the searches' candidates without re-estimating BatchNorm statistics first (the paper's setting)." };
var summaryOption = new Option<string?>("--summary-json") { Description = "Write one JSON object per final model to this file (an array)." };
var root = new RootCommand("AMC against uniform, sensitivity, NetAdapt and global ratios on the Fashion-MNIST CNN, by channels (FLOPs) and by weights (non-zeros).")
{
    quickOption, seedsOption, episodesOption, fineTuneOption, dataOption, outOption, summaryOption, noRecalibrationOption,
};
root.SetAction(parse =>
{
    TorchHealth.Ensure();   // libtorch's known answers first: one warning line if this CPU gets them wrong (docs/reference/installation.md)
    bool quick = parse.GetValue(quickOption);
    int seeds = quick ? 1 : parse.GetValue(seedsOption), episodes = quick ? 40 : parse.GetValue(episodesOption);
    int warmup = quick ? 10 : Math.Min(100, episodes / 4), fineTune = quick ? 50 : parse.GetValue(fineTuneOption);
    if (seeds < 1 || episodes < 2 || fineTune < 0)
    {
        Console.Error.WriteLine($"--seeds must be positive, --episodes at least 2 and --finetune-steps ≥ 0 (got {seeds}, {episodes}, {fineTune}).");
        return 2;
    }
    string outDir = parse.GetValue(outOption)!;
    Directory.CreateDirectory(outDir);
    FashionMnist all, test;
    try
    {
        all = FashionMnist.Load(parse.GetValue(dataOption)!, train: true);
        test = FashionMnist.Load(parse.GetValue(dataOption)!, train: false);
    }
    catch (FileNotFoundException e)
    {
        Console.Error.WriteLine(e.Message);
        return 2;
    }
    // The searches see only a validation split carved from the training images; the test set is read once per final model.
    long validCount = quick ? 1_000 : 5_000;
    FashionMnist train = all.Take(quick ? 8_000 : all.Count - validCount), valid = all.Slice(all.Count - validCount, validCount);
    if (quick) test = test.Take(2_000);
    FashionMnist searchSplit = valid.Take(quick ? 500 : 2_000);
    // The searches' metric: validation accuracy after re-estimating BatchNorm statistics on 20 training batches
    // (--no-recalibration: as the paper, the pruned model as it is).
    bool recalibrate = !parse.GetValue(noRecalibrationOption);
    double Validate(TorchSharp.torch.nn.Module m) => recalibrate
        ? Cnn.WithRecalibratedBatchNorm(m, train, 20, x => Cnn.Accuracy(x, searchSplit))
        : Cnn.Accuracy(m, searchSplit);

    string cache = Path.Combine(outDir, $"dense-cnn{(quick ? "-quick" : "")}.bin");
    var dense = Cnn.Build(1);
    if (File.Exists(cache)) dense.load(cache);
    else
    {
        Cnn.Train(dense, train, quick ? 300 : 3 * train.Count / Cnn.BatchSize, 1e-3, null, 1);
        dense.save(cache);
    }
    dense.eval();
    double denseTest = Cnn.Accuracy(dense, test);
    Console.WriteLine($"Dense CNN: validation {Cnn.Accuracy(dense, valid):P2}, test {denseTest:P2}; {Methods.Weights.Sum(w => dense.get_parameter(w)!.numel()):N0} weights, {Cnn.Macs(dense):N0} MACs per image.");

    var methods = new Methods(dense, train, Validate, quick, episodes, warmup);
    var rows = new List<Dictionary<string, object>>();
    int failures = 0;
    foreach (var (mode, budget) in new[] { (AmcMode.Channel, 0.5), (AmcMode.Fine, 0.1) })
    {
        string budgetKind = mode == AmcMode.Channel ? "flops" : "nnz";
        var fixedRatios = new Dictionary<string, (IReadOnlyDictionary<string, double> Ratios, double Seconds)>();
        (IReadOnlyDictionary<string, double>, double) Timed(Func<IReadOnlyDictionary<string, double>> find)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var ratios = find();
            return (ratios, clock.Elapsed.TotalSeconds);
        }
        fixedRatios["uniform"] = Timed(() => methods.Uniform(mode, budget));
        fixedRatios["sensitivity"] = Timed(() => methods.Sensitivity(mode, budget));
        fixedRatios["netadapt"] = Timed(() => methods.NetAdaptRatios(mode, budget, 1));
        fixedRatios["global"] = Timed(() => methods.Global(mode, budget));
        foreach (string method in new[] { "uniform", "sensitivity", "netadapt", "global", "amc" })
            for (int seed = 1; seed <= seeds; seed++)
            {
                IReadOnlyDictionary<string, double> ratios;
                double searchSeconds;
                if (method == "amc")
                {
                    AmcResult result = methods.Amc(mode, budget, seed);
                    (ratios, searchSeconds) = (result.Ratios, result.Seconds);
                    string stem = Path.Combine(outDir, $"amc-{mode.ToString().ToLowerInvariant()}-seed{seed}");
                    File.WriteAllText(stem + ".csv", result.ToCsv());
                    Plots.Episodes(result, budget, stem + ".png", $"AMC, {mode.ToString().ToLowerInvariant()} mode, {budget:P0} of the {budgetKind} kept, seed {seed}");
                    int over = result.Episodes.Count(e => e.Resource > budget + 1e-9);
                    if (over > 0)
                    {
                        Console.Error.WriteLine($"AMC {mode} seed {seed}: {over} episodes exceeded the budget.");
                        failures++;
                    }
                    Console.WriteLine($"{result} ({result.Seconds:F0} s)");
                }
                else (ratios, searchSeconds) = fixedRatios[method];

                var model = Cnn.Copy(dense);
                double achieved, accuracy;
                if (mode == AmcMode.Fine)
                {
                    long steps = fineTune;
                    using var pruner = new GradualPruner(model, new PruningOptions
                    {
                        Schedule = new PolynomialDecaySchedule(0, 1 - budget, 0, Math.Max(1, steps * 6 / 10), Math.Max(1, steps / 20)),
                        Targets = PruningTargets.Default.Include(Methods.Weights),
                        Scope = method == "global" ? PruningScope.Global : PruningScope.LayerWise,
                        Overrides = method == "global" ? new Dictionary<string, ParameterOverride>() : ParameterOverride.FinalSparsities(ratios),
                    });
                    if (steps == 0) pruner.Step();
                    Cnn.Train(model, train, steps, 5e-4, pruner, seed);
                    var report = pruner.Strip();
                    ratios = report.Layers.ToDictionary(l => l.Name, l => l.Sparsity);
                    achieved = report.Layers.Sum(l => (double)l.Nonzero) / report.Layers.Sum(l => (double)l.Total);
                    accuracy = Cnn.Accuracy(model, test);
                }
                else
                {
                    var channels = Cnn.Graph(model);
                    using (var pruner = new GradualPruner(model, new PruningOptions
                    {
                        Schedule = new OneShotSchedule(0.5),
                        Targets = PruningTargets.Default.Include(Methods.Producers),
                        Granularity = PruningGranularity.OutputChannels(),
                        Channels = channels,
                        Overrides = ParameterOverride.FinalSparsities(ratios),
                    }))
                    {
                        pruner.Step();
                        Cnn.Train(model, train, fineTune, 5e-4, pruner, seed);
                        pruner.Strip();
                    }
                    channels.ShrinkInPlace();
                    achieved = Cnn.Macs(model) / (double)Cnn.Macs(dense);
                    accuracy = Cnn.Accuracy(model, test);
                }
                if (achieved > budget + 1e-9)
                {
                    Console.Error.WriteLine($"{method} {mode} seed {seed}: kept {achieved:P3} of the {budgetKind}, over the {budget:P0} budget.");
                    failures++;
                }
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{mode,-7} {method,-11} seed {seed}: test {accuracy:P2}, kept {achieved:P2} of the {budgetKind}, ratios {string.Join(" ", ratios.Select(r => $"{r.Key.Replace(".weight", "")} {r.Value:P0}"))}"));
                rows.Add(new Dictionary<string, object>
                {
                    ["method"] = method, ["mode"] = mode == AmcMode.Fine ? "fine" : "channel", ["budget_kind"] = budgetKind, ["budget"] = budget,
                    ["achieved"] = achieved, ["metric"] = accuracy, ["metric_name"] = "test_accuracy", ["seed"] = seed,
                    ["search_seconds"] = searchSeconds, ["ratios"] = ratios.ToDictionary(r => r.Key, r => r.Value), ["dense_metric"] = denseTest,
                });
            }
    }
    Plots.Table(rows);
    if (parse.GetValue(summaryOption) is { } summary) JsonSummary.Write(summary, rows);
    return failures == 0 ? 0 : 1;
});
return root.Parse(args).Invoke();
