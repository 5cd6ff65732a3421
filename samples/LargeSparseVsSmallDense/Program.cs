// Zhu & Gupta (2017), "To prune, or not to prune": at the same number of non-zero weights, is a large model pruned
// gradually better than a small dense one? Three experiments sized for two CPU cores:
//   mlp  — 784-w-w-10 MLPs on Fashion-MNIST, dense at every width vs wider ones pruned to each narrower one's NNZ;
//   cnn  — a small CNN at width multipliers (the MobileNet experiment's shape), same comparison;
//   mobilenet — a depthwise-separable MobileNet at width multipliers, as the paper's, same comparison;
//   lstm — stacked LSTM language models on the King James Bible: dense small/medium vs a large one pruned;
//   transformer — decoder-only transformer language models on the same text: dense narrow vs a wide one pruned.
using System.CommandLine;
using LargeSparseVsSmallDense.Experiments;
using LargeSparseVsSmallDense.Harness;
using Pruning.Interop;
using Pruning.Samples.Language;
using Pruning.Samples;

var quickOption = new Option<bool>("--quick") { Description = "A short run (about half a minute): one seed, small models, little data." };
var seedsOption = new Option<int>("--seeds") { Description = "Seeds per model (1 with --quick).", DefaultValueFactory = _ => 3 };
var seedOption = new Option<int>("--seed") { Description = "The first seed.", DefaultValueFactory = _ => 1 };
var experimentsOption = new Option<string>("--experiments") { Description = "Comma-separated: mlp, cnn, mobilenet, lstm, transformer.", DefaultValueFactory = _ => "mlp,cnn,mobilenet,lstm,transformer" };
var dataOption = new Option<string>("--data") { Description = "Directory with the Fashion-MNIST IDX files.", DefaultValueFactory = _ => FashionMnist.DefaultDirectory };
var corpusOption = new Option<string?>("--corpus") { Description = "A text file of verses instead of the output of `bible` (one verse per line)." };
var cnnImagesOption = new Option<int>("--cnn-images") { Description = "Training images for the CNN and MobileNet experiments, in [1, 60000].", DefaultValueFactory = _ => 20_000 };
var cnnEpochsOption = new Option<int>("--cnn-epochs") { Description = "Epochs for the CNN and MobileNet experiments.", DefaultValueFactory = _ => 3 };
var outOption = new Option<string>("--out") { Description = "Directory for the plots.", DefaultValueFactory = _ => Path.Combine("out", "large-sparse-vs-small-dense") };
var summaryOption = new Option<string?>("--summary-json") { Description = "Write one JSON object per trained model to this file, as they finish." };
var root = new RootCommand("Large-sparse vs small-dense at equal non-zeros (Zhu & Gupta 2017): MLP, CNN and MobileNet on Fashion-MNIST, LSTM and transformer LMs on the King James Bible.")
{
    quickOption, seedsOption, seedOption, experimentsOption, dataOption, corpusOption, cnnImagesOption, cnnEpochsOption, outOption, summaryOption,
};
root.SetAction(parse => Run(parse.GetValue(quickOption), parse.GetValue(seedsOption), parse.GetValue(seedOption),
    parse.GetValue(experimentsOption)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(),
    parse.GetValue(dataOption)!, parse.GetValue(corpusOption), parse.GetValue(cnnImagesOption), parse.GetValue(cnnEpochsOption),
    parse.GetValue(outOption)!, parse.GetValue(summaryOption)));
return root.Parse(args).Invoke();

static int Run(bool quick, int seeds, int seed0, HashSet<string> experiments, string data, string? corpusFile, int cnnImages, int cnnEpochs, string outDir, string? summaryJson)
{
TorchHealth.Ensure();   // libtorch's known answers first: one warning line if this CPU gets them wrong (docs/reference/installation.md)
if (experiments.Except(["mlp", "cnn", "mobilenet", "lstm", "transformer"]).FirstOrDefault() is { } unknown)
{
    Console.Error.WriteLine($"Unknown experiment '{unknown}'; choose from mlp, cnn, mobilenet, lstm, transformer.");
    return 2;
}
if (cnnImages < 1 || cnnImages > 60_000 || cnnEpochs < 1)
{
    Console.Error.WriteLine($"--cnn-images must be in [1, 60000] and --cnn-epochs positive (got {cnnImages}, {cnnEpochs}).");
    return 2;
}
if (quick) seeds = 1;
int[] seedList = Enumerable.Range(seed0, seeds).ToArray();
Directory.CreateDirectory(outDir);
var rows = new List<ResultRow>();
// Rows are written as they finish, so an interrupted full run keeps what it measured.
void Add(IEnumerable<ResultRow> results)
{
    foreach (ResultRow row in results)
    {
        rows.Add(row);
        if (summaryJson is not null) Report.WriteJson(summaryJson, rows);
    }
}
var clock = System.Diagnostics.Stopwatch.StartNew();
void Log(string line) => Console.WriteLine(line);

try
{
    if (experiments.Contains("mlp") || experiments.Contains("cnn") || experiments.Contains("mobilenet"))
    {
        var train = FashionMnist.Load(data, train: true);
        var test = FashionMnist.Load(data, train: false);
        if (experiments.Contains("mlp"))
        {
            Log($"== mlp: 784-w-w-10 on Fashion-MNIST{(quick ? " (quick: 10,000 images, 1 epoch)" : ", 5 epochs")}");
            var mlp = new ImageExperiments(quick ? train.Take(10_000) : train, test, quick ? 1 : 5, Log);
            Add(quick ? mlp.Mlp([50, 100, 200], [200], seedList) : mlp.Mlp([50, 100, 200, 400], [400, 800], seedList));
        }
        if (experiments.Contains("cnn"))
        {
            Log($"== cnn: width multipliers on Fashion-MNIST{(quick ? " (quick: 4,000 images, 1 epoch)" : $", {cnnImages:N0} images, {cnnEpochs} epochs")}");
            var cnn = new ImageExperiments(train.Take(quick ? 4_000 : cnnImages), test, quick ? 1 : cnnEpochs, Log);
            Add(quick ? cnn.Cnn([0.25, 0.5], [0.5], seedList) : cnn.Cnn([0.25, 0.5, 1.0], [0.5, 1.0], seedList));
        }
        if (experiments.Contains("mobilenet"))
        {
            Log($"== mobilenet: depthwise-separable MobileNets at width multipliers on Fashion-MNIST{(quick ? " (quick: 4,000 images, 1 epoch)" : $", {cnnImages:N0} images, {cnnEpochs} epochs")}");
            var mobile = new ImageExperiments(train.Take(quick ? 4_000 : cnnImages), test, quick ? 1 : cnnEpochs, Log);
            Add(quick ? mobile.MobileNet([0.25, 0.5], [0.5], seedList) : mobile.MobileNet([0.25, 0.5, 1.0], [0.5, 1.0], seedList));
        }
    }
    if (experiments.Contains("lstm") || experiments.Contains("transformer"))
    {
        KjvCorpus corpus = corpusFile is null ? KjvCorpus.LoadFromBibleCommand() : KjvCorpus.Parse(File.ReadLines(corpusFile));
        if (experiments.Contains("lstm"))
        {
            var settings = quick
                ? new LanguageSettings(Vocabulary: 10_000, Layers: 2, Batch: 20, Steps: 35, Epochs: 1, Dropout: 0.2, TrainFraction: 0.05, LearningRate: 2e-3)
                : new LanguageSettings(Vocabulary: 10_000, Layers: 2, Batch: 20, Steps: 35, Epochs: 4, Dropout: 0.3, TrainFraction: 0.25, LearningRate: 2e-3);
            Log($"== lstm: 2-layer LSTM language models on the King James Bible, vocabulary {settings.Vocabulary:N0}, {settings.Epochs} epoch(s) over {settings.TrainFraction:P0} of the training text");
            var lstm = new LstmExperiment(corpus, settings, Log);
            Add(quick ? lstm.Run([32, 64], 128, [0.9], seedList) : lstm.Run([64, 128], 256, [0.9], seedList));
        }
        if (experiments.Contains("transformer"))
        {
            // Steps is the context; the widths keep 4 heads (head sizes 8–32).
            var settings = quick
                ? new LanguageSettings(Vocabulary: 10_000, Layers: 2, Batch: 20, Steps: 32, Epochs: 1, Dropout: 0.0, TrainFraction: 0.05, LearningRate: 1e-3)
                : new LanguageSettings(Vocabulary: 10_000, Layers: 2, Batch: 20, Steps: 64, Epochs: 3, Dropout: 0.1, TrainFraction: 0.25, LearningRate: 1e-3);
            Log($"== transformer: 2-block pre-LN transformer language models on the King James Bible, 4 heads, context {settings.Steps}, vocabulary {settings.Vocabulary:N0}, {settings.Epochs} epoch(s) over {settings.TrainFraction:P0} of the training text");
            var transformer = new TransformerExperiment(corpus, settings, heads: 4, Log);
            Add(quick ? transformer.Run([32, 48], 64, [0.9], seedList) : transformer.Run([64, 96], 128, [0.8, 0.9], seedList));
        }
    }
}
catch (FileNotFoundException e)
{
    Console.Error.WriteLine(e.Message);
    return 2;
}

Console.WriteLine();
Console.WriteLine(Report.Table(rows));
foreach (var (name, title) in new[] { ("mlp", "MLP on Fashion-MNIST: dense by width vs wider pruned"), ("cnn", "CNN on Fashion-MNIST: dense by width multiplier vs wider pruned"), ("mobilenet", "MobileNet on Fashion-MNIST: dense by width multiplier vs wider pruned"), ("lstm", "LSTM LM on the KJV Bible: dense small/medium vs large pruned"), ("transformer", "Transformer LM on the KJV Bible: dense narrow vs wide pruned") })
    if (rows.Any(r => r.Experiment == name))
    {
        string png = Path.Combine(outDir, $"{name}.png");
        Report.Plot(rows, name, png, title);
        Console.WriteLine($"Plot: {png}");
    }
if (summaryJson is not null) Report.WriteJson(summaryJson, rows);
Console.WriteLine($"Done in {clock.Elapsed.TotalMinutes:F1} min.");
return 0;
}
