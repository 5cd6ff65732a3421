using System.Diagnostics;
using Pruning.Scheduling;
using Pruning.Selection;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Benchmarks;

/// <summary>
/// A fast side-by-side check for everyday use (<c>-- quick</c>): dense and pruned training steps interleaved in
/// rounds in one process, medians compared; and the time of one mask update over 2.4 M weights.
/// </summary>
internal static class QuickMode
{
    public static void Run()
    {
        Console.WriteLine($"torch threads: {torch.get_num_threads()}");
        var dense = new Trainer(pruned: false, cleanState: false);
        var pruned = new Trainer(pruned: true, cleanState: true);
        var prunedNoState = new Trainer(pruned: true, cleanState: false);
        var times = new List<double>[] { [], [], [] };
        for (int round = 0; round < 25; round++)
        {
            times[0].Add(dense.Time(100));
            times[1].Add(pruned.Time(100));
            times[2].Add(prunedNoState.Time(100));
        }
        double d = Median(times[0].Skip(5)), p = Median(times[1].Skip(5)), q = Median(times[2].Skip(5));
        Console.WriteLine($"LeNet-300-100 step (batch 128, Adam, Δt = 100): dense {d:F3} ms; pruned {p:F3} ms (overhead {(p / d - 1) * 100:F1} %); " +
            $"pruned without the optimizer's state cleaning {q:F3} ms (overhead {(q / d - 1) * 100:F1} %)");
        Console.WriteLine($"  inside the loop: pruner.Step() {pruned.StepMicros / pruned.Steps:F0} µs on plain steps, {pruned.UpdateMicros / pruned.Updates:F0} µs on update steps");

        {
            var lenet = BenchmarkModels.LeNet300100();
            using var update = new GradualPruner(lenet, new PruningOptions { Schedule = new ConstantSparsitySchedule(0.9, 0, 1) });
            using var remask = new GradualPruner(lenet, new PruningOptions { Schedule = new OneShotSchedule(0.9) });
            remask.Step();
            var u = new List<double>(); var r = new List<double>();
            for (int i = 0; i < 200; i++) { u.Add(Time(() => update.Step())); r.Add(Time(() => remask.Step())); }
            Console.WriteLine($"LeNet-300-100: mask update {Median(u.Skip(20)) * 1000:F0} µs, re-mask only {Median(r.Skip(20)) * 1000:F0} µs");
        }

        foreach (PruningScope scope in new[] { PruningScope.LayerWise, PruningScope.Global })
        {
            var model = BenchmarkModels.Mlp1200();
            using var update = new GradualPruner(model, new PruningOptions { Schedule = new ConstantSparsitySchedule(0.9, 0, 1), Scope = scope });
            using var remask = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.9), Scope = scope });
            remask.Step();
            var updates = new List<double>();
            var remasks = new List<double>();
            for (int i = 0; i < 30; i++)
            {
                updates.Add(Time(() => update.Step()));
                remasks.Add(Time(() => remask.Step()));
            }
            Console.WriteLine($"784-1200-1200-10 ({scope}): mask update {Median(updates.Skip(5)):F2} ms, re-mask only {Median(remasks.Skip(5)):F2} ms");
        }
    }

    internal static double Time(Action action)
    {
        var sw = Stopwatch.StartNew();
        action();
        return sw.Elapsed.TotalMilliseconds;
    }

    internal static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted[sorted.Length / 2];
    }

    private sealed class Trainer
    {
        private readonly Sequential _model;
        private readonly optim.Optimizer _optimizer;
        private readonly GradualPruner? _pruner;
        private readonly Tensor _x, _y;

        public double UpdateMicros, StepMicros;
        public int Updates, Steps;

        public Trainer(bool pruned, bool cleanState)
        {
            _model = BenchmarkModels.LeNet300100();
            _optimizer = torch.optim.Adam(_model.parameters(), 1e-3);
            _x = torch.randn(128, 784);
            _y = torch.randint(0, 10, [128]);
            if (pruned)
                _pruner = new GradualPruner(_model, new PruningOptions { Schedule = new ConstantSparsitySchedule(0.9, 0, 100) }, cleanState ? _optimizer : null);
        }

        /// <summary>Milliseconds per step over <paramref name="steps"/> steps (one mask update among them when pruned).</summary>
        public double Time(int steps)
        {
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < steps; i++)
            {
                BenchmarkModels.TrainStep(_model, _optimizer, _x, _y, pruner: null);
                if (_pruner is not null)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    bool updated = _pruner.Step() is not null;
                    double us = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
                    if (updated) { UpdateMicros += us; Updates++; } else { StepMicros += us; Steps++; }
                }
            }
            return sw.Elapsed.TotalMilliseconds / steps;
        }
    }
}
