using System.Globalization;
using Pruning.Benchmarks.Baselines;
using Pruning.Export;
using Pruning.Grouping;
using Pruning.Scheduling;
using Pruning.Sparse;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Tuning;
using Pruning.Structure;
using Pruning.Targets;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Benchmarks;

/// <summary>
/// <c>-- quick --models [lenet,cnn,mlp4096,resnet18] [--sparsity 0.9] [--threads 2] [--json] [--layers] [--save DIR]</c>: whole models, the sparse runtime
/// against ONNX Runtime, at batch 1 and 64, in one process. Each model is pruned one-shot by magnitude (latency does
/// not depend on training) and exported three ways: our file (fp32 CSR by <c>Auto</c>, and with fp16 values), the
/// same weights dense in ONNX (zeros in place: what ORT runs), and the channel-shrunk model with about as many
/// weights as the sparse one has non-zeros (the same fraction of every dependency group's channels removed by L2 norm,
/// then <see cref="ChannelGraph.ShrinkInPlace"/>): what ORT can actually speed up; our runtime runs that one too. resnet18 is TorchVision's, on
/// 3×64×64 inputs (traced into residual layers). ORT: preallocated, bound OrtValues,
/// intra-op threads = ours. Timing: interleaved blocks, as in the kernel mode. --layers also times every top-level runtime layer inside the model.
/// --json: per model and batch, the two summary rows (<c>variant</c> pruned or shrunk, <c>ours_ms</c>, <c>ort_ms</c>,
/// <c>ratio_vs_ort</c> = ORT time / ours), then one row per engine (<c>engine</c>, <c>ms</c>, …).
/// </summary>
internal static class ModelsQuickMode
{
    public static bool Wants(string[] args) => args.Contains("--models");

    public static void Run(string[] args)
    {
        int threads = KernelQuickMode.Int(args, "--threads", Environment.ProcessorCount);
        double sparsity = KernelQuickMode.Double(args, "--sparsity", 0.9);
        bool json = args.Contains("--json");
        string list = KernelQuickMode.Arg(args, "--models") is { } l && !l.StartsWith("--", StringComparison.Ordinal) ? l : "lenet,cnn,mlp4096";
        torch.set_num_threads(threads);
        foreach (string name in list.Split(','))
        {
            var (model, input) = Build(name);
            Measure(name, model, input, sparsity, threads, json, args);
        }
    }

    private static (nn.Module<Tensor, Tensor> Model, long[] Input) Build(string name)
    {
        torch.manual_seed(1);
        return name switch
        {
            "lenet" => (nn.Sequential(("fc1", nn.Linear(784, 300)), ("relu1", nn.ReLU()), ("fc2", nn.Linear(300, 100)), ("relu2", nn.ReLU()), ("fc3", nn.Linear(100, 10))), [784]),
            "mlp4096" => (nn.Sequential(("fc1", nn.Linear(4096, 4096)), ("relu1", nn.ReLU()), ("fc2", nn.Linear(4096, 4096)), ("relu2", nn.ReLU()), ("fc3", nn.Linear(4096, 10))), [4096]),
            "cnn" => (nn.Sequential(
                ("conv1", nn.Conv2d(1, 16, 3, padding: 1)), ("bn1", nn.BatchNorm2d(16)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
                ("conv2", nn.Conv2d(16, 32, 3, padding: 1)), ("bn2", nn.BatchNorm2d(32)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
                ("conv3", nn.Conv2d(32, 64, 3, padding: 1)), ("bn3", nn.BatchNorm2d(64)), ("relu3", nn.ReLU()), ("gap", nn.AdaptiveAvgPool2d(1)),
                ("flat", nn.Flatten()), ("fc", nn.Linear(64, 10))), [1, 28, 28]),
            "resnet18" => (torchvision.models.resnet18(num_classes: 10), [3, 64, 64]),
            _ => throw new ArgumentException($"--models: unknown model '{name}'; known: lenet, cnn, mlp4096, resnet18."),
        };
    }

    private static void Measure(string name, nn.Module<Tensor, Tensor> model, long[] input, double sparsity, int threads, bool json, string[] args)
    {
        model.eval();
        var shape = input.Length == 1 ? new FeatureShape((int)input[0]) : new FeatureShape((int)input[0], (int)input[1], (int)input[2]);
        long weights = Weights(model);

        // The channel-shrunk model first, from a copy of the dense weights.
        nn.Module<Tensor, Tensor> shrunk = Shrunk(name, model, weights, sparsity, out double channelSparsity);
        using (var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(sparsity) }))
        {
            pruner.Step();
            pruner.Strip();
        }
        SparseModel ours = SparseExport.ToSparseModel(model, shape);
        SparseModel half = SparseExport.ToSparseModel(model, shape, MatrixFormat.CsrFloat16);
        SparseModel oursShrunk = SparseExport.ToSparseModel(shrunk, shape);
        using var ortDense = new OrtModel(OnnxExport.ToBytes(model, shape), input, outputs: 10, threads);
        using var ortShrunk = new OrtModel(OnnxExport.ToBytes(shrunk, shape), input, outputs: 10, threads);
        long nonZeros = NonZeros(ours.Layers);
        if (KernelQuickMode.Arg(args, "--save") is { } saveDir)
        {
            // The models both engines run, for `pruning bench` and ONNX Runtime outside this process.
            Directory.CreateDirectory(saveDir);
            ours.Save(Path.Combine(saveDir, $"{name}-pruned.psm"));
            oursShrunk.Save(Path.Combine(saveDir, $"{name}-shrunk.psm"));
            FormatTuning.Reencode(ours, MatrixFormat.Dense).Save(Path.Combine(saveDir, $"{name}-dense.psm"));   // the same weights, every layer dense
            File.WriteAllBytes(Path.Combine(saveDir, $"{name}-dense.onnx"), OnnxExport.ToBytes(model, shape));
        }

        foreach (int batch in new[] { 1, 64 })
        {
            var random = new Random(batch);
            float[] x = Enumerable.Range(0, (int)(shape.Size * batch)).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
            float[] y = new float[ours.OutputShape.Size * batch];
            // Per-layer choice by measurement at this batch (CSR or dense; direct or im2col), after the kernels have been
            // compiled to their final tier by a warm-up of both models.
            var warm = System.Diagnostics.Stopwatch.StartNew();
            while (warm.ElapsedMilliseconds < 500) { ours.Run(x, y, batch, threads); oursShrunk.Run(x, y, batch, threads); }
            SparseModel tuned = FormatTuning.Tune(ours, [MatrixFormat.Csr, MatrixFormat.Dense], batch, runs: 15, threads).Model;
            SparseModel tunedShrunk = FormatTuning.Tune(oursShrunk, [MatrixFormat.Csr, MatrixFormat.Dense], batch, runs: 15, threads).Model;
            Action[] variants =
            [
                () => ours.Run(x, y, batch, threads),
                () => half.Run(x, y, batch, threads),
                ortDense.Prepared(x, batch),
                ortShrunk.Prepared(x, batch),
                () => oursShrunk.Run(x, y, batch, threads),
                () => tuned.Run(x, y, batch, threads),
                () => tunedShrunk.Run(x, y, batch, threads),
            ];
            double[] ms = KernelQuickMode.Blocks(variants, rounds: 12, warmupMs: 50, blockMs: 30, stream: null, out _);
            if (args.Contains("--layers"))
            {
                Console.WriteLine($"    layers of sparse-fp32, batch {batch}:");
                PerLayer(ours, batch, threads);
                Console.WriteLine($"    layers of runtime-shrunk, batch {batch}:");
                PerLayer(oursShrunk, batch, threads);
            }
            string[] names = ["sparse-fp32", "sparse-fp16", "onnxruntime-dense", "onnxruntime-shrunk", "runtime-shrunk", "sparse-fp32-tuned", "runtime-shrunk-tuned"];
            if (json)
            {
                // The summary rows: "pruned" = our runtime on the weight-pruned model against ONNX Runtime on the dense
                // one; "shrunk" = both engines on the same channel-shrunk model.
                // "-tuned": the same models after FormatTuning at this batch (each layer's storage and algorithm measured).
                foreach (var (variant, oursMs, ortMs) in new[] { ("pruned", ms[0], ms[2]), ("shrunk", ms[4], ms[3]), ("pruned-tuned", ms[5], ms[2]), ("shrunk-tuned", ms[6], ms[3]) })
                    Console.WriteLine(FormattableString.Invariant(
                        $"{{\"model\":\"{name}\",\"variant\":\"{variant}\",\"batch\":{batch},\"threads\":{threads},\"ours_ms\":{oursMs:F5},\"ort_ms\":{ortMs:F5},\"ratio_vs_ort\":{ortMs / oursMs:F3}}}"));
                for (int v = 0; v < names.Length; v++)
                    Console.WriteLine(FormattableString.Invariant(
                        $"{{\"model\":\"{name}\",\"sparsity\":{sparsity},\"batch\":{batch},\"threads\":{threads},\"engine\":\"{names[v]}\",\"ms\":{ms[v]:F5},\"ratio_vs_onnxruntime_dense\":{ms[2] / ms[v]:F3},\"weights\":{weights},\"non_zeros\":{nonZeros},\"shrunk_weights\":{Weights(shrunk)},\"channel_sparsity\":{channelSparsity:F3}}}"));
                continue;
            }
            Console.WriteLine(FormattableString.Invariant(
                $"{name} at {sparsity:P0} ({nonZeros:N0} of {weights:N0} weights; shrunk model {Weights(shrunk):N0} weights, {channelSparsity:P0} of channels removed), batch {batch}, {threads} threads:"));
            for (int v = 0; v < names.Length; v++)
                Console.WriteLine(FormattableString.Invariant($"    {names[v],-20} {ms[v] * 1000,10:F1} µs   ({ms[2] / ms[v]:F2}× ONNX Runtime dense)"));
        }
    }

    /// <summary>
    /// Every top-level layer of <paramref name="model"/> timed inside the model (medians of 40 runs after 10 warm-up
    /// runs), so a layer sees the buffers and caches the whole run leaves it; the last row is the layout conversions at
    /// the model's input and output.
    /// </summary>
    private static void PerLayer(SparseModel model, int batch, int threads)
    {
        var x = new float[model.InputShape.Size * batch];
        for (int i = 0; i < x.Length; i++) x[i] = (i % 7) * 0.1f - 0.3f;
        var y = new float[model.OutputShape.Size * batch];
        var runs = new List<long[]>();
        for (int i = 0; i < 50; i++)
        {
            var ticks = new long[model.Layers.Count + 1];
            model.Run(x, y, batch, threads, ticks);
            if (i >= 10) runs.Add(ticks);
        }
        double Median(int layer) => QuickMode.Median(runs.Select(r => r[layer] * 1e6 / System.Diagnostics.Stopwatch.Frequency).ToList());
        FeatureShape shape = model.InputShape;
        for (int l = 0; l < model.Layers.Count; l++)
        {
            SparseLayer layer = model.Layers[l];
            FeatureShape output = layer.OutputShape(shape);
            double us = Median(l);
            (long dense, long executed) = Macs(layer, shape);
            // GFLOP/s = 2 · multiply-adds / time: dense-equivalent (the work a dense engine does) and executed (non-zeros only).
            string rate = dense == 0 ? "" : FormattableString.Invariant($"  {2.0 * dense * batch / us / 1e3,7:F1} GFLOP/s dense-equivalent, {2.0 * executed * batch / us / 1e3,6:F1} executed");
            Console.WriteLine(FormattableString.Invariant($"      {layer.Describe(),-60} {shape} → {output}: {us,9:F1} µs{rate}"));
            shape = output;
        }
        Console.WriteLine(FormattableString.Invariant($"      {"layout conversions at the input and output",-60} {Median(model.Layers.Count),9:F1} µs"));
        Console.WriteLine(FormattableString.Invariant($"      {"whole (median of the runs' sums)",-60} {QuickMode.Median(runs.Select(r => r.Sum() * 1e6 / System.Diagnostics.Stopwatch.Frequency).ToList()),9:F1} µs"));
    }

    /// <summary>Multiply-adds per sample of a layer (inside residual, concatenation and scaling layers too): dense, and over the stored non-zeros.</summary>
    private static (long Dense, long NonZero) Macs(SparseLayer layer, FeatureShape input)
    {
        switch (layer)
        {
            case LinearLayer linear:
                return ((long)linear.Weight.Rows * linear.Weight.Cols, linear.Weight.NonZeros);
            case Conv2dLayer conv:
                long positions = conv.OutputShape(input).Plane;
                return ((long)conv.Weight.Rows * conv.Weight.Cols * positions, conv.Weight.NonZeros * positions);
            case ResidualLayer residual:
                return Add(Chain(residual.Main, input), Chain(residual.Shortcut, input));
            case ConcatLayer concat:
                return concat.Branches.Aggregate((0L, 0L), (sum, branch) => Add(sum, Chain(branch, input)));
            case ScaleLayer scale:
                return Chain(scale.Factors, input);
            default:
                return (0, 0);
        }
    }

    private static (long, long) Chain(IReadOnlyList<SparseLayer> chain, FeatureShape input)
    {
        (long, long) sum = (0, 0);
        foreach (SparseLayer layer in chain)
        {
            sum = Add(sum, Macs(layer, input));
            input = layer.OutputShape(input);
        }
        return sum;
    }

    private static (long, long) Add((long A, long B) x, (long A, long B) y) => (x.A + y.A, x.B + y.B);

    /// <summary>Stored non-zero weights, inside branching layers too.</summary>
    private static long NonZeros(IEnumerable<SparseLayer> layers) => LayerChains.All(layers).Sum(l => l switch
    {
        LinearLayer linear => linear.Weight.NonZeros,
        Conv2dLayer conv => conv.Weight.NonZeros,
        _ => 0,
    });

    /// <summary>Weights of the Linear and Conv2d layers (no biases, no BatchNorm).</summary>
    private static long Weights(nn.Module model) =>
        model.named_parameters().Where(p => p.name.EndsWith(".weight", StringComparison.Ordinal) && p.parameter.dim() >= 2).Sum(p => p.parameter.numel());

    /// <summary>
    /// A copy of <paramref name="model"/> with the same fraction of every dependency group's channels removed, the
    /// fraction chosen (by bisection on <see cref="ChannelGraph.WeightCount"/>) so that it keeps about as many weights
    /// as the sparse model.
    /// </summary>
    private static nn.Module<Tensor, Tensor> Shrunk(string name, nn.Module<Tensor, Tensor> model, long weights, double sparsity, out double channelSparsity)
    {
        var (copy, input) = Build(name);
        copy.load_state_dict(model.state_dict());
        copy.eval();
        using var example = torch.randn([2, .. input]);
        var graph = ChannelGraph.Trace(copy, example);
        double low = 0, high = 0.999;
        for (int i = 0; i < 40; i++)
        {
            double mid = (low + high) / 2;
            if (graph.WeightCount(mid) > (1 - sparsity) * weights) low = mid; else high = mid;
        }
        channelSparsity = high;
        using (var pruner = new GradualPruner(copy, new PruningOptions
        {
            Schedule = new OneShotSchedule(channelSparsity),
            Targets = PruningTargets.Default.Include([.. graph.Weights]),
            Granularity = PruningGranularity.OutputChannels(LpNorm.L2),
            Channels = graph,
        }))
        {
            pruner.Step();
            pruner.Strip();
        }
        graph.ShrinkInPlace();
        return copy;
    }
}
