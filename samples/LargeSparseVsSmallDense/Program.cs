// Zhu & Gupta (2017), "To prune, or not to prune": at the same number of non-zero weights, is a large model pruned
// gradually better than a small dense one? Three experiments sized for two CPU cores:
//   mlp  — 784-w-w-10 MLPs on Fashion-MNIST, dense at every width vs wider ones pruned to each narrower one's NNZ;
//   cnn  — a small CNN at width multipliers (the MobileNet experiment's shape), same comparison;
//   lstm — stacked LSTM language models on the King James Bible: dense small/medium vs a large one at 80 / 90 %.
using System.Globalization;
using LargeSparseVsSmallDense.Experiments;
using LargeSparseVsSmallDense.Harness;
using Pruning.Samples;

bool quick = false;
int seeds = 3, seed0 = 1, cnnImages = 20_000, cnnEpochs = 3;
string data = FashionMnist.DefaultDirectory, outDir = Path.Combine("out", "large-sparse-vs-small-dense");
string? summaryJson = null, corpusFile = null;
var experiments = new HashSet<string> { "mlp", "cnn", "lstm" };
for (int i = 0; i < args.Length; i++)
{
    string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"Option {args[i]} needs a value.");
    switch (args[i])
    {
        case "--quick": quick = true; break;
        case "--seeds": seeds = int.Parse(Next(), CultureInfo.InvariantCulture); break;
        case "--seed": seed0 = int.Parse(Next(), CultureInfo.InvariantCulture); break;
        case "--experiments": experiments = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(); break;
        case "--data": data = Next(); break;
        case "--corpus": corpusFile = Next(); break;
        case "--cnn-images": cnnImages = int.Parse(Next(), CultureInfo.InvariantCulture); break;
        case "--cnn-epochs": cnnEpochs = int.Parse(Next(), CultureInfo.InvariantCulture); break;
        case "--out": outDir = Next(); break;
        case "--summary-json": summaryJson = Next(); break;
        default:
            Console.Error.WriteLine($"Unknown option '{args[i]}'. Options: --quick --seeds N (3) --seed N (1) --experiments mlp,cnn,lstm --cnn-images N (20000) --cnn-epochs N (3) --data DIR --corpus FILE --out DIR (out/...) --summary-json FILE");
            return 2;
    }
}
if (experiments.Except(["mlp", "cnn", "lstm"]).FirstOrDefault() is { } unknown)
{
    Console.Error.WriteLine($"Unknown experiment '{unknown}'; choose from mlp, cnn, lstm.");
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
    if (experiments.Contains("mlp") || experiments.Contains("cnn"))
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
    }
    if (experiments.Contains("lstm"))
    {
        KjvCorpus corpus = corpusFile is null ? KjvCorpus.LoadFromBibleCommand() : KjvCorpus.Parse(File.ReadLines(corpusFile));
        var settings = quick
            ? new LstmExperiment.Settings(Vocabulary: 10_000, Layers: 2, Batch: 20, Steps: 35, Epochs: 1, Dropout: 0.2, TrainFraction: 0.05)
            : new LstmExperiment.Settings(Vocabulary: 10_000, Layers: 2, Batch: 20, Steps: 35, Epochs: 4, Dropout: 0.3, TrainFraction: 0.25);
        Log($"== lstm: 2-layer LSTM language models on the King James Bible, vocabulary {settings.Vocabulary:N0}, {settings.Epochs} epoch(s) over {settings.TrainFraction:P0} of the training text");
        var lstm = new LstmExperiment(corpus, settings, Log);
        Add(quick ? lstm.Run([32, 64], 128, [0.9], seedList) : lstm.Run([64, 128], 256, [0.9], seedList));
    }
}
catch (FileNotFoundException e)
{
    Console.Error.WriteLine(e.Message);
    return 2;
}

Console.WriteLine();
Console.WriteLine(Report.Table(rows));
foreach (var (name, title) in new[] { ("mlp", "MLP on Fashion-MNIST: dense by width vs wider pruned"), ("cnn", "CNN on Fashion-MNIST: dense by width multiplier vs wider pruned"), ("lstm", "LSTM LM on the KJV Bible: dense small/medium vs large pruned") })
    if (rows.Any(r => r.Experiment == name))
    {
        string png = Path.Combine(outDir, $"{name}.png");
        Report.Plot(rows, name, png, title);
        Console.WriteLine($"Plot: {png}");
    }
if (summaryJson is not null) Report.WriteJson(summaryJson, rows);
Console.WriteLine($"Done in {clock.Elapsed.TotalMinutes:F1} min.");
return 0;
