// One-shot pruning without retraining, and after a short fine-tune: magnitude, Wanda (|W|·‖X‖, per output row) and
// OBS/SparseGPT (saliency w²/[H⁻¹]_qq with the OBS update of the kept weights) on LeNet-300-100 and the conv-BN CNN
// (Fashion-MNIST), the 2-layer KJV LSTM language model and the KJV transformer language model of samples/SparseInference,
// at 50/70/80/90 % and 2:4, over several calibration seeds.
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Pruning;
using Pruning.Criteria;
using Pruning.Grouping;
using Pruning.Interop;
using Pruning.Reconstruction;
using Pruning.Samples;
using Pruning.Samples.Language;
using Pruning.Scheduling;
using TorchSharp;

TorchHealth.MakeOpenMpPassive();

var modelOption = new Option<string>("--model") { Description = "mlp, cnn, lstm, transformer, or all.", DefaultValueFactory = _ => "all" };
modelOption.AcceptOnlyFromAmong("mlp", "cnn", "lstm", "transformer", "all");
var quickOption = new Option<bool>("--quick") { Description = "A short run for CI: small models and data, 70 % and 2:4, one seed, a few fine-tuning steps." };
var seedsOption = new Option<int>("--seeds") { Description = "Calibration (and fine-tuning order) seeds per setting.", DefaultValueFactory = _ => 3 };
var samplesOption = new Option<int>("--calibration-samples") { Description = "Calibration samples: images (mlp, cnn), 35-token windows (lstm) or context windows (transformer).", DefaultValueFactory = _ => 512 };
var fineTuneOption = new Option<int>("--finetune-steps") { Description = "Fine-tuning steps after each one-shot pruning (0: none).", DefaultValueFactory = _ => 300 };
var dataOption = new Option<string>("--data") { Description = "Directory with the Fashion-MNIST IDX files.", DefaultValueFactory = _ => FashionMnist.DefaultDirectory };
var corpusOption = new Option<string?>("--corpus") { Description = "A text file of verses instead of the output of `bible` (lstm, transformer)." };
var outOption = new Option<string>("--out") { Description = "Directory for the cached dense models and the plots.", DefaultValueFactory = _ => Path.Combine("out", "one-shot") };
var summaryOption = new Option<string?>("--summary-json") { Description = "Write one JSON object per evaluated model to this file (an array)." };
var patternsOption = new Option<string?>("--patterns") { Description = "Comma-separated sparsities and N:M patterns, e.g. 50%,90%,4:8 (default 50%,70%,80%,90%,2:4; --quick 70%,2:4)." };
var fromOption = new Option<string?>("--from-summary") { Description = "Print the table and draw the plots of an earlier run's --summary-json file, without training." };
var root = new RootCommand("One-shot pruning with magnitude, Wanda and OBS/SparseGPT, without and with a short fine-tune.")
{
    modelOption, quickOption, seedsOption, samplesOption, fineTuneOption, patternsOption, dataOption, corpusOption, outOption, summaryOption, fromOption,
};
root.SetAction(parse =>
{
    TorchHealth.Ensure();   // libtorch's known answers first: one warning line if this CPU gets them wrong (docs/reference/installation.md)
    bool quick = parse.GetValue(quickOption);
    int seeds = quick ? 1 : parse.GetValue(seedsOption), samples = quick ? 128 : parse.GetValue(samplesOption);
    int fineTuneSteps = quick ? 10 : parse.GetValue(fineTuneOption);
    if (seeds < 1 || samples < 1 || fineTuneSteps < 0)
    {
        Console.Error.WriteLine($"--seeds and --calibration-samples must be positive and --finetune-steps ≥ 0 (got {seeds}, {samples}, {fineTuneSteps}).");
        return 2;
    }
    string patternList = parse.GetValue(patternsOption) ?? (quick ? "70%,2:4" : "50%,70%,80%,90%,2:4");
    var patterns = new List<(string Label, double Sparsity, PruningGranularity Granularity)>();
    foreach (string label in patternList.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
    {
        if (ParsePattern(label) is not { } pattern)
        {
            Console.Error.WriteLine($"--patterns: '{label}' is neither a sparsity like 70% (between 0 and 100) nor an N:M pattern like 2:4 (0 < N < M ≤ 64).");
            return 2;
        }
        patterns.Add((label, pattern.Sparsity, pattern.Granularity));
    }
    string outDir = parse.GetValue(outOption)!;
    Directory.CreateDirectory(outDir);
    if (parse.GetValue(fromOption) is { } earlier)
    {
        if (!File.Exists(earlier))
        {
            Console.Error.WriteLine($"--from-summary: no file '{earlier}'.");
            return 2;
        }
        var saved = Result.Read(earlier);
        Report.Table(saved);
        Plots(saved, outDir);
        return 0;
    }
    string which = parse.GetValue(modelOption)!;
    var tasks = new List<ModelTask>();
    try
    {
        if (which is "mlp" or "cnn" or "all")
        {
            FashionMnist train = FashionMnist.Load(parse.GetValue(dataOption)!, train: true), test = FashionMnist.Load(parse.GetValue(dataOption)!, train: false);
            if (quick) (train, test) = (train.Take(5_000), test.Take(2_000));
            if (which is "mlp" or "all") tasks.Add(new ImageTask("mlp", train, test, quick ? 1 : 5));
            if (which is "cnn" or "all") tasks.Add(new ImageTask("cnn", train, test, quick ? 1 : 3));
        }
        if (which is "lstm" or "transformer" or "all")
        {
            KjvCorpus corpus = parse.GetValue(corpusOption) is { } file ? KjvCorpus.Parse(File.ReadLines(file)) : KjvCorpus.LoadFromBibleCommand();
            var vocabulary = Vocabulary.Build(corpus.Train, 10_000);
            long[] train = vocabulary.Encode(corpus.Train), test = vocabulary.Encode(corpus.Test);
            train = train[..(int)(train.Length * (quick ? 0.03 : 0.25))];
            test = test[..Math.Min(test.Length, quick ? 5_000 : 40_000)];
            if (which is "lstm" or "all") tasks.Add(new LanguageTask(train, test, vocabulary.Count, quick ? 64 : 256, quick ? 1 : 2));
            if (which is "transformer" or "all") tasks.Add(new TransformerTask(train, test, vocabulary.Count, quick ? 64 : 128, quick ? 32 : 64, quick ? 1 : 3));
        }
    }
    catch (FileNotFoundException e)
    {
        Console.Error.WriteLine(e.Message);
        return 2;
    }

    string[] methods = ["magnitude", "wanda", "obs"];
    var rows = new List<Result>();
    int failures = 0;
    foreach (ModelTask task in tasks)
    {
        task.TrainDense(Path.Combine(outDir, $"dense-{task.Name}{(quick ? "-quick" : "")}.bin"));
        foreach (var (label, sparsity, granularity) in patterns)
            foreach (string method in methods)
                for (int seed = 1; seed <= seeds; seed++)
                {
                    var model = task.CopyOfDense();
                    // Magnitude: the default criterion, selected by the engine; Wanda and OBS choose masks themselves.
                    MaskPolicy? policy = method switch
                    {
                        "magnitude" => null,
                        "wanda" => new WandaPolicy(task.Calibration(model, samples, seed)),
                        _ => new ObsPolicy(task.Calibration(model, samples, seed)),
                    };
                    using var pruner = new GradualPruner(model, new PruningOptions
                    {
                        Schedule = new OneShotSchedule(sparsity), Policy = policy, Granularity = granularity, Targets = task.Targets,
                    });
                    var clock = Stopwatch.StartNew();
                    pruner.Step();
                    double seconds = clock.Elapsed.TotalSeconds;
                    double achieved = pruner.Report().Sparsity;
                    foreach (string name in pruner.ParameterNames)
                    {
                        using var mask = pruner.Mask(name);
                        long pruned = mask.numel() - mask.count_nonzero().item<long>();
                        long expected = Pruning.Selection.MaskSelector.PrunedCount(sparsity, mask.numel());
                        if (pruned != expected)
                        {
                            Console.Error.WriteLine($"{task.Name} {label} {method}: '{name}' has {pruned} pruned weights, not the exact {expected}.");
                            failures++;
                        }
                    }
                    long covariance = method == "magnitude" ? 0 : pruner.ParameterNames.Max(n => Columns(model, n) * (method == "obs" ? Columns(model, n) : 1) * 8);
                    double metric = task.Evaluate(model);
                    rows.Add(new Result(task.Name, task.MetricName, task.HigherIsBetter, method, label, sparsity, granularity.RunLength > 0, samples, false, metric, seed, seconds, achieved, covariance));
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{task.Name} {label,-4} {method,-9} seed {seed}: {task.MetricName} {metric:F4} (pruned in {seconds:F2} s, sparsity {achieved:P2})"));
                    if (fineTuneSteps > 0)
                    {
                        task.FineTune(model, pruner, fineTuneSteps, seed);
                        double tuned = task.Evaluate(model);
                        rows.Add(new Result(task.Name, task.MetricName, task.HigherIsBetter, method, label, sparsity, granularity.RunLength > 0, samples, true, tuned, seed, seconds, pruner.Report().Sparsity, covariance));
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"",-24} after {fineTuneSteps} fine-tuning steps: {tuned:F4}"));
                    }
                    (policy as IDisposable)?.Dispose();
                }
    }

    Report.Table(rows);
    Plots(rows, outDir);
    if (parse.GetValue(summaryOption) is { } summary) JsonSummary.Write(summary, rows.Select(r => r.ToJson()).ToList());
    return failures == 0 ? 0 : 1;
});
return root.Parse(args).Invoke();

static void Plots(IReadOnlyList<Result> rows, string outDir)
{
    foreach (var model in rows.GroupBy(r => r.Model))
    {
        string png = Path.Combine(outDir, $"one-shot-{model.Key}.png");
        Report.Plot(model.ToList(), png);
        Console.WriteLine($"plot: {png}");
    }
}

// "70%" → 70 % of each tensor's weights, by element; "4:8" → 4 of every 8 consecutive weights kept (50 %).
static (double Sparsity, PruningGranularity Granularity)? ParsePattern(string label)
{
    var invariant = CultureInfo.InvariantCulture;
    if (label.EndsWith('%') && double.TryParse(label[..^1], NumberStyles.Float, invariant, out double percent) && percent > 0 && percent < 100)
        return (percent / 100, PruningGranularity.Element);
    string[] parts = label.Split(':');
    if (parts.Length == 2 && int.TryParse(parts[0], NumberStyles.None, invariant, out int n) && int.TryParse(parts[1], NumberStyles.None, invariant, out int m) && n > 0 && n < m && m <= 64)
        return (1 - (double)n / m, PruningGranularity.NOfM(n, m));
    return null;
}

static long Columns(torch.nn.Module model, string parameter) => model.get_parameter(parameter)!.shape.Skip(1).Aggregate(1L, (a, b) => a * b);
