// Prune, export, and run without TorchSharp: a model trained and pruned with the Pruning package, exported, and run
// by the standalone sparse runtime next to TorchSharp in one process. --model mlp (the default): LeNet-300-100 on
// Fashion-MNIST; --model lstm: the KJV word-level LSTM language model of samples/LargeSparseVsSmallDense; --model
// transformer: a decoder-only transformer language model on the same text, generating with a key/value cache;
// --model mobilenet: a depthwise-separable CNN on Fashion-MNIST, pruned by weights and by channels; --model resnet: a
// small ResNet built of Residual blocks, pruned by weights.
using System.CommandLine;
using Pruning.Interop;
using Pruning.Samples;

TorchHealth.MakeOpenMpPassive();   // before the first torch call: libtorch's idle OpenMP threads must not spin on our cores

var modelOption = new Option<string>("--model") { Description = "mlp (LeNet-300-100 on Fashion-MNIST), lstm (the KJV language model), transformer (a decoder-only transformer language model on the same text), mobilenet (a depthwise-separable CNN on Fashion-MNIST: unstructured and channel pruning) or resnet (a small ResNet of Residual blocks: unstructured).", DefaultValueFactory = _ => "mlp" };
modelOption.AcceptOnlyFromAmong("mlp", "lstm", "transformer", "mobilenet", "resnet");
var quickOption = new Option<bool>("--quick") { Description = "A short run for CI: less data, fewer epochs, a smaller language model." };
var epochsOption = new Option<int>("--epochs") { Description = "Training epochs (mlp, mobilenet, resnet).", DefaultValueFactory = _ => 3 };
var sparsityOption = new Option<double>("--sparsity") { Description = "Final sparsity of the gradual pruning, in [0, 1) (mlp; lstm runs 0, 50, 80 and 90 %, transformer 0, 50, 70 and 90 %).", DefaultValueFactory = _ => 0.9 };
var seedOption = new Option<int>("--seed") { Description = "Seed for weights and batch order.", DefaultValueFactory = _ => 1 };
var trainLimitOption = new Option<long>("--train-limit") { Description = "Use only the first N training images; 0 = all (mlp)." };
var dataOption = new Option<string>("--data") { Description = "Directory with the Fashion-MNIST IDX files (mlp).", DefaultValueFactory = _ => FashionMnist.DefaultDirectory };
var corpusOption = new Option<string?>("--corpus") { Description = "A text file of verses instead of the output of `bible` (lstm, transformer)." };
var outOption = new Option<string>("--out") { Description = "Directory for the exported files.", DefaultValueFactory = _ => Path.Combine("out", "sparse-inference") };
var summaryOption = new Option<string?>("--summary-json") { Description = "Write one JSON object per exported model to this file (an array)." };
var root = new RootCommand("Train and prune a model, export it, and run the file on the sparse runtime against TorchSharp: metric, speed, size.")
{
    modelOption, quickOption, epochsOption, sparsityOption, seedOption, trainLimitOption, dataOption, corpusOption, outOption, summaryOption,
};
root.SetAction(parse =>
{
    TorchHealth.Ensure();   // libtorch's known answers first: one warning line if this CPU gets them wrong (docs/reference/installation.md)
    var settings = new Settings(parse.GetValue(quickOption), parse.GetValue(epochsOption), parse.GetValue(sparsityOption), parse.GetValue(seedOption),
        parse.GetValue(trainLimitOption), parse.GetValue(dataOption)!, parse.GetValue(corpusOption), parse.GetValue(outOption)!);
    if (settings.Epochs < 1 || !(settings.Sparsity >= 0 && settings.Sparsity < 1) || settings.TrainLimit < 0)
    {
        Console.Error.WriteLine($"--epochs must be positive, --sparsity in [0, 1) and --train-limit ≥ 0 (got {settings.Epochs}, {settings.Sparsity}, {settings.TrainLimit}).");
        return 2;
    }
    Directory.CreateDirectory(settings.Out);
    var rows = new List<Dictionary<string, object>>();
    int code;
    try
    {
        code = parse.GetValue(modelOption) switch
        {
            "lstm" => LstmComparison.Run(settings, rows),
            "transformer" => TransformerComparison.Run(settings, rows),
            "mobilenet" or "resnet" => ConvNetComparison.Run(settings, rows, parse.GetValue(modelOption)!),
            _ => MlpComparison.Run(settings, rows),
        };
    }
    catch (FileNotFoundException e)
    {
        Console.Error.WriteLine(e.Message);
        return 2;
    }
    if (parse.GetValue(summaryOption) is { } summary) JsonSummary.Write(summary, rows);
    return code;
});
return root.Parse(args).Invoke();

internal sealed record Settings(bool Quick, int Epochs, double Sparsity, int Seed, long TrainLimit, string Data, string? Corpus, string Out);
