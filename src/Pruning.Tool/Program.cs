// pruning: inspect, benchmark and tune the sparse model files (.psm, .psq) that Pruning's exporters write.
using System.CommandLine;
using Pruning.Tool;

var file = new Argument<string>("file") { Description = "A sparse model file (.psm) or sequence model file (.psq)." };

var inspect = new Command("inspect", "Layers, shapes, formats, non-zeros and bytes of a model file, and its file version.") { file };
inspect.SetAction(parse => Commands.Run(() => Commands.Inspect(parse.GetValue(file)!)));

var batches = new Option<string>("--batch") { Description = "Batch sizes to time, comma-separated.", DefaultValueFactory = _ => "1,64" };
var threads = new Option<int>("--threads") { Description = "Worker threads for the kernels; 0 = all cores.", DefaultValueFactory = _ => 0 };
var runs = new Option<int>("--runs") { Description = "Timed runs per measurement (the median is reported).", DefaultValueFactory = _ => 31 };
var steps = new Option<int>("--steps") { Description = "Sequence models: tokens per sequence.", DefaultValueFactory = _ => 35 };
var bench = new Command("bench", "Latency on this machine, per layer and whole, against the same weights stored dense, timed side by side.")
{
    file, batches, threads, runs, steps,
};
bench.SetAction(parse => Commands.Run(() => Commands.Bench(parse.GetValue(file)!, parse.GetValue(batches)!, parse.GetValue(threads), parse.GetValue(runs), parse.GetValue(steps))));

var output = new Option<string>("--output", "-o") { Description = "Where to write the tuned model.", Required = true };
var tuneBatch = new Option<int>("--batch") { Description = "The batch size to tune for.", DefaultValueFactory = _ => 1 };
var allFormats = new Option<bool>("--all-formats") { Description = "Also consider fp16 and int8 values (not exact: rounding within their stated bounds)." };
var tune = new Command("tune", "Chooses each layer's weight format (CSR, block-sparse, N:M, dense; direct or im2col convolution) by timing them here, and writes the tuned model.")
{
    file, output, tuneBatch, allFormats, runs,
};
tune.SetAction(parse => Commands.Run(() => Commands.Tune(parse.GetValue(file)!, parse.GetValue(output)!, parse.GetValue(tuneBatch), parse.GetValue(allFormats), parse.GetValue(runs))));

var toOnnx = new Command("to-onnx", "Not offered: says why and what to use instead.") { file };
toOnnx.SetAction(parse => Commands.Run(() => Commands.ToOnnx(parse.GetValue(file)!)));

var root = new RootCommand("Inspect, benchmark and tune the sparse model files (.psm, .psq) that Pruning exports. Exit codes: 0 done, 1 the file or an argument is wrong (the message says which), 2 usage.")
{
    inspect, bench, tune, toOnnx,
};
ParseResult parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    foreach (var error in parsed.Errors) Console.Error.WriteLine($"error: {error.Message}");
    Console.Error.WriteLine("Run 'pruning --help' (or 'pruning <command> --help') for the usage.");
    return 2;
}
return parsed.Invoke();
