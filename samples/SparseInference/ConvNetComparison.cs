// The convolutional networks people train, on Fashion-MNIST, pruned and run on the sparse runtime:
// --model mobilenet: a depthwise-separable network; --model resnet: a small ResNet (basic blocks as a Module class of its own).
// (a) gradual unstructured pruning to 90 %, exported: accuracy must equal TorchSharp's, latency at batch 1 and 64;
// (b) channel pruning by dependency groups (ChannelGraph) to half of the MACs, then ShrinkInPlace(): outputs equal to
// the masked model's, parameters and latency against the dense model. The channels that meet at a residual add are
// one group; depthwise layers are pruned with the channels they carry.
using System.Diagnostics;
using Pruning;
using Pruning.Export;
using Pruning.Grouping;
using Pruning.Samples;
using Pruning.Scheduling;
using Pruning.Sparse;
using Pruning.Sparse.Layers;
using Pruning.Structure;
using Pruning.Targets;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

internal static class ConvNetComparison
{
    private const int BatchSize = 128;
    private static readonly long[] Input = [1, 28, 28];

    private static Sequential Build(string kind, int seed) => kind == "resnet" ? ResNet(seed) : MobileNet(seed);

    /// <summary>
    /// Stem 3×3 conv (16), then basic blocks written as a Module class of our own, as a user writes them: 16→16, 16→32
    /// (stride 2, 1×1 shortcut), 32→32, 32→64 (stride 2, 1×1 shortcut); global pooling; 64→10. Channel pruning, the
    /// runtime and ONNX find the residual adds by tracing forward.
    /// </summary>
    private static Sequential ResNet(int seed)
    {
        torch.manual_seed(seed);
        var layers = new List<(string, nn.Module<Tensor, Tensor>)>
        {
            ("stem", nn.Conv2d(1, 16, 3, padding: 1, bias: false)), ("stem_bn", nn.BatchNorm2d(16)), ("stem_relu", nn.ReLU()),
        };
        int channels = 16, block = 0;
        foreach (var (outChannels, stride) in new[] { (16, 1), (32, 2), (32, 1), (64, 2) })
        {
            layers.Add(($"block{++block}", new BasicBlock(channels, outChannels, stride)));
            channels = outChannels;
        }
        layers.AddRange([("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(channels, 10))]);
        return nn.Sequential(layers);
    }

    /// <summary>ResNet's basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), the shortcut a strided 1×1 conv and BatchNorm when the shape changes.</summary>
    private sealed class BasicBlock : nn.Module<Tensor, Tensor>
    {
        private readonly Conv2d conv1, conv2;
        private readonly BatchNorm2d bn1, bn2;
        private readonly Sequential? shortcut;

        public BasicBlock(long inputs, long outputs, long stride) : base(nameof(BasicBlock))
        {
            conv1 = nn.Conv2d(inputs, outputs, 3, stride: stride, padding: 1, bias: false);
            bn1 = nn.BatchNorm2d(outputs);
            conv2 = nn.Conv2d(outputs, outputs, 3, padding: 1, bias: false);
            bn2 = nn.BatchNorm2d(outputs);
            if (stride != 1 || inputs != outputs)
                shortcut = nn.Sequential(("conv", nn.Conv2d(inputs, outputs, 1, stride: stride, bias: false)), ("bn", nn.BatchNorm2d(outputs)));
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = torch.NewDisposeScope();
            Tensor y = bn2.call(conv2.call(nn.functional.relu(bn1.call(conv1.call(x)))));
            return nn.functional.relu(y + (shortcut is null ? x : shortcut.call(x))).MoveToOuterDisposeScope();
        }
    }

    /// <summary>Stem 3×3 conv (16), then depthwise-separable blocks 16→32 (stride 2), 32→32, 32→64 (stride 2), 64→64; global pooling; 64→10.</summary>
    private static Sequential MobileNet(int seed)
    {
        torch.manual_seed(seed);
        return ConvNets.MobileNet(16, [(32, 2), (32, 1), (64, 2), (64, 1)]);
    }

    public static int Run(Settings s, List<Dictionary<string, object>> rows, string kind)
    {
        var clock = Stopwatch.StartNew();
        FashionMnist train = FashionMnist.Load(s.Data, train: true), test = FashionMnist.Load(s.Data, train: false);
        long trainLimit = s.Quick && s.TrainLimit == 0 ? 6_000 : s.TrainLimit;
        if (trainLimit > 0) train = train.Take(Math.Min(trainLimit, train.Count));
        if (s.Quick) test = test.Take(2_000);
        int epochs = s.Quick ? 1 : s.Epochs;
        long steps = epochs * ((train.Count + BatchSize - 1) / BatchSize);
        var shape = new FeatureShape(1, 28, 28);

        // The dense model, trained once; both prunings start from it.
        var dense = Build(kind, s.Seed);
        Train(dense, train, steps, null, s.Seed);
        double denseAccuracy = train.Count > 0 ? test.Accuracy(dense, asImages: true) : 0;
        long denseParams = dense.parameters().Sum(p => p.numel());
        Console.WriteLine($"{(kind == "resnet" ? "ResNet" : "MobileNet")}-style network: {denseParams:N0} parameters; dense test accuracy {denseAccuracy:P2} after {steps:N0} steps ({clock.Elapsed.TotalSeconds:F0} s).");

        // (a) Unstructured: gradual pruning to the target while training on, then the runtime.
        var sparseModel = Copy(dense, kind, s.Seed);
        var schedule = new PolynomialDecaySchedule(0, s.Sparsity, beginStep: 0, endStep: Math.Max(1, steps * 7 / 10), frequency: Math.Max(1, Math.Min(100, steps / 20)));
        using (var pruner = new GradualPruner(sparseModel, new PruningOptions { Schedule = schedule }))
        {
            Train(sparseModel, train, steps, pruner, s.Seed + 1);
            Console.WriteLine(pruner.Strip());
        }
        sparseModel.eval();
        SparseModel runtime = SparseExport.ToSparseModel(sparseModel, shape);
        Console.WriteLine(runtime.Describe());
        var (torchAccuracy, runtimeAccuracy, worst) = Compare(sparseModel, runtime, test);
        Console.WriteLine($"Unstructured {s.Sparsity:P0}: test accuracy TorchSharp {torchAccuracy:P2}, sparse runtime {runtimeAccuracy:P2} (largest logit difference {worst:E1} of the range)");
        var (sparse1, torch1) = Latency(runtime, sparseModel, test, 1);
        var (sparse64, torch64) = Latency(runtime, sparseModel, test, 64);
        Console.WriteLine($"  latency batch 1: runtime {sparse1 * 1000:F1} µs, TorchSharp {torch1 * 1000:F1} µs ({torch1 / sparse1:F2}×); batch 64: {sparse64 * 1000:F1} vs {torch64 * 1000:F1} µs ({torch64 / sparse64:F2}×)");

        var row = new Dictionary<string, object>
        {
            ["model"] = kind, ["sparsity"] = s.Sparsity, ["metric_name"] = "accuracy", ["dense_metric"] = denseAccuracy, ["dense_params"] = denseParams,
            ["torchsharp_metric"] = torchAccuracy, ["runtime_metric"] = runtimeAccuracy, ["max_relative_logit_difference"] = worst,
            ["batch1_speedup"] = torch1 / sparse1, ["batch64_speedup"] = torch64 / sparse64,
        };
        rows.Add(row);
        bool same = worst <= 1e-4 && torchAccuracy == runtimeAccuracy;
        // (b) Channels by dependency groups (ChannelGraph, traced from the model): every group loses the same fraction
        // of its channels, chosen so that half of the MACs remain. In the ResNet the stem and the blocks of a stage
        // meet at adds and form one group; depthwise layers follow the group of the channels they carry.
        var channelModel = Copy(dense, kind, s.Seed);
        using var example = test.Images.narrow(0, 0, 2).reshape(-1, 1, 28, 28);
        var graph = ChannelGraph.Trace(channelModel, example);
        double denseMacs = graph.Macs();
        double fraction = ChannelFraction(graph, 0.5);
        using (var pruner = new GradualPruner(channelModel, new PruningOptions
        {
            Schedule = new OneShotSchedule(fraction),
            Targets = PruningTargets.Default.Include([.. graph.Weights]),
            Granularity = PruningGranularity.OutputChannels(),
            Channels = graph,
        }))
        {
            pruner.Step();
            Train(channelModel, train, Math.Max(1, steps / 3), pruner, s.Seed + 2);   // a short fine-tune, masks held
            pruner.Strip();
        }
        channelModel.eval();
        using var sample = test.Images.narrow(0, 0, Math.Min(256, test.Count)).reshape(-1, 1, 28, 28);
        Tensor masked;
        using (torch.no_grad()) masked = channelModel.call(sample);
        graph.ShrinkInPlace();
        var shrunk = channelModel;   // the same modules, physically smaller
        long shrunkParams = shrunk.parameters().Sum(p => p.numel());
        double shrunkMacs = ChannelGraph.Trace(shrunk, example).Macs();
        double maxDiff;
        using (torch.no_grad())
        using (masked)
        using (var small = shrunk.call(sample))
            maxDiff = masked.sub(small).abs().max().item<float>();
        double shrunkAccuracy = test.Accuracy(shrunk, asImages: true);
        SparseModel shrunkRuntime = SparseExport.ToSparseModel(shrunk, shape);
        var (_, shrunkRuntimeAccuracy, shrunkWorst) = Compare(shrunk, shrunkRuntime, test);
        var (shrunkTorch1, denseTorch1) = TorchLatency(shrunk, dense, test, 1);
        var (shrunkTorch64, denseTorch64) = TorchLatency(shrunk, dense, test, 64);
        Console.WriteLine($"Channels ({graph.Groups.Count} dependency groups, {fraction:P1} of each group's channels removed): {shrunkParams:N0} of {denseParams:N0} parameters, {shrunkMacs / denseMacs:P1} of the MACs; shrunk vs masked outputs differ by at most {maxDiff:E1}");
        Console.WriteLine($"  test accuracy {shrunkAccuracy:P2} (runtime {shrunkRuntimeAccuracy:P2}); TorchSharp latency shrunk vs dense: batch 1 {shrunkTorch1 * 1000:F1} vs {denseTorch1 * 1000:F1} µs ({denseTorch1 / shrunkTorch1:F2}×), batch 64 {shrunkTorch64 * 1000:F1} vs {denseTorch64 * 1000:F1} µs ({denseTorch64 / shrunkTorch64:F2}×)");

        foreach (var (key, value) in new Dictionary<string, object>
        {
            ["channel_fraction_removed"] = fraction, ["channel_groups"] = graph.Groups.Count, ["flops_kept"] = shrunkMacs / denseMacs,
            ["shrunk_params"] = shrunkParams, ["shrunk_max_abs_diff"] = maxDiff,
            ["shrunk_metric"] = shrunkAccuracy, ["shrunk_runtime_metric"] = shrunkRuntimeAccuracy,
            ["shrunk_batch1_speedup"] = denseTorch1 / shrunkTorch1, ["shrunk_batch64_speedup"] = denseTorch64 / shrunkTorch64,
            ["seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 1),
        }) row[key] = value;
        // The runtime must reproduce TorchSharp, and the shrunk model the masked one.
        return same && shrunkWorst <= 1e-4 && maxDiff <= 1e-4 ? 0 : 1;
    }

    private static void Train(Sequential model, FashionMnist data, long steps, GradualPruner? pruner, int seed) =>
        ImageTraining.Train(model, data, steps, 2e-3, pruner, (ulong)(7000 + seed), BatchSize);

    private static Sequential Copy(Sequential model, string kind, int seed)
    {
        var copy = Build(kind, seed);
        copy.load_state_dict(model.state_dict());
        copy.eval();
        return copy;
    }

    /// <summary>The fraction of every group's channels to remove so that the MACs fall to <paramref name="budget"/> (bisection).</summary>
    private static double ChannelFraction(ChannelGraph graph, double budget)
    {
        double dense = graph.Macs(), low = 0, high = 0.95;
        for (int i = 0; i < 30; i++)
        {
            double mid = (low + high) / 2;
            if (graph.Macs(mid) / dense > budget) low = mid; else high = mid;
        }
        return high;
    }

    /// <summary>Test accuracy in TorchSharp and on the runtime, and the largest logit difference relative to the logit range.</summary>
    private static (double Torch, double Runtime, double Worst) Compare(Sequential model, SparseModel runtime, FashionMnist test)
    {
        int n = (int)test.Count;
        float[] images = test.Images.data<float>().ToArray();
        long[] labels = test.Labels.data<long>().ToArray();
        // In chunks of 100: the runtime's buffers for a batch (im2col columns of a dense layer) stay within its default working-memory budget.
        var ours = new float[n * 10];
        for (int start = 0; start < n; start += 100)
        {
            int count = Math.Min(100, n - start);
            runtime.Run(images.AsSpan(start * 784, count * 784), ours.AsSpan(start * 10, count * 10), count);
        }
        float[] theirs;
        using (torch.no_grad())
        using (var x = test.Images.reshape(-1, 1, 28, 28))
        using (var y = model.call(x))
            theirs = y.data<float>().ToArray();
        double scale = theirs.Max(v => (double)Math.Abs(v)), worst = 0;
        int a = 0, b = 0;
        for (int i = 0; i < n; i++)
        {
            if (Measure.ArgMax(theirs.AsSpan(i * 10, 10)) == labels[i]) a++;
            if (Measure.ArgMax(ours.AsSpan(i * 10, 10)) == labels[i]) b++;
        }
        for (int i = 0; i < ours.Length; i++) worst = Math.Max(worst, Math.Abs(ours[i] - theirs[i]) / scale);
        return ((double)a / n, (double)b / n, worst);
    }

    /// <summary>Runtime vs TorchSharp on the same weights, interleaved in blocks; milliseconds.</summary>
    private static (double Runtime, double Torch) Latency(SparseModel runtime, Sequential model, FashionMnist test, int batch)
    {
        using var x = test.Images.narrow(0, 0, batch).reshape(-1, 1, 28, 28).contiguous();
        float[] input = x.data<float>().ToArray(), output = new float[batch * 10];
        double[] ms = Measure.Blocks([() => runtime.Run(input, output, batch), () => { using var _ = torch.no_grad(); using var y = model.call(x); }], rounds: 10);
        return (ms[0], ms[1]);
    }

    /// <summary>Two TorchSharp models on the same input, interleaved in blocks; milliseconds.</summary>
    private static (double First, double Second) TorchLatency(Sequential first, Sequential second, FashionMnist test, int batch)
    {
        using var x = test.Images.narrow(0, 0, batch).reshape(-1, 1, 28, 28).contiguous();
        double[] ms = Measure.Blocks([
            () => { using var _ = torch.no_grad(); using var y = first.call(x); },
            () => { using var _ = torch.no_grad(); using var y = second.call(x); }], rounds: 10);
        return (ms[0], ms[1]);
    }
}
