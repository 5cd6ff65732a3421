using System.Diagnostics;
using Pruning.Optimizers;
using Pruning.Scheduling;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Benchmarks;

/// <summary>
/// <c>-- scalar-race --optimizer torch-adam|safe-adam|torch-adamw|safe-adamw|torch-sgd|safe-sgd [--seconds 15]
/// [--gc-every-ms 1] [--prune]</c>: trains LeNet-300-100 on a fixed random batch for a while, with a background thread
/// forcing a full garbage collection every few milliseconds (0 = never). TorchSharp 0.107's optimizers pass temporary
/// Scalars to native code; when the finalizer frees one mid-call the process aborts, so each run is one trial and
/// its exit code is the result (0 = survived). <c>scalar-race.sh</c> runs the trials and counts.
/// </summary>
internal static class ScalarRaceMode
{
    public static bool Wants(string[] args) => args.Length > 0 && args[0] == "scalar-race";

    public static int Run(string[] args)
    {
        string kind = KernelQuickMode.Arg(args, "--optimizer") ?? "torch-adam";
        double seconds = KernelQuickMode.Double(args, "--seconds", 15);
        int gcEvery = KernelQuickMode.Int(args, "--gc-every-ms", 1);
        bool prune = args.Contains("--prune");

        var model = BenchmarkModels.LeNet300100();
        var p = model.parameters();
        optim.Optimizer optimizer = kind switch
        {
            "torch-adam" => torch.optim.Adam(p, 1e-3),
            "safe-adam" => SafeOptim.Adam(p, 1e-3),
            "torch-adamw" => torch.optim.AdamW(p, 1e-3, weight_decay: 0.01),
            "safe-adamw" => SafeOptim.AdamW(p, 1e-3, weight_decay: 0.01),
            "torch-sgd" => torch.optim.SGD(p, 0.01, momentum: 0.9),
            "safe-sgd" => SafeOptim.SGD(p, 0.01, momentum: 0.9),
            _ => throw new ArgumentException($"--optimizer {kind} is not one of torch-adam, safe-adam, torch-adamw, safe-adamw, torch-sgd, safe-sgd."),
        };
        using GradualPruner? pruner = prune
            ? new GradualPruner(model, new PruningOptions { Schedule = new PolynomialDecaySchedule(0, 0.9, 100, 2000, 100) }, optimizer)
            : null;
        torch.manual_seed(2);
        using Tensor x = torch.randn(128, 784);
        using Tensor y = torch.randint(0, 10, [128]);

        using var stop = new CancellationTokenSource();
        var collector = new Thread(() =>
        {
            while (!stop.IsCancellationRequested && gcEvery > 0)
            {
                GC.Collect();
                Thread.Sleep(gcEvery);
            }
        }) { IsBackground = true };
        collector.Start();
        var clock = Stopwatch.StartNew();
        long steps = 0;
        while (clock.Elapsed.TotalSeconds < seconds)
        {
            BenchmarkModels.TrainStep(model, optimizer, x, y, pruner);
            steps++;
        }
        stop.Cancel();
        collector.Join();
        Console.WriteLine($"survived: {kind}{(prune ? " + pruner" : "")}, {steps} steps in {clock.Elapsed.TotalSeconds:F1} s, {GC.CollectionCount(0)} collections, forced every {gcEvery} ms (0 = never), concurrent GC {System.Runtime.GCSettings.LatencyMode != System.Runtime.GCLatencyMode.Batch}");
        return 0;
    }
}
