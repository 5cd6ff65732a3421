using Pruning.Optimizers;
using Pruning.Scheduling;
using Pruning.Structure;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests;

/// <summary>A training run as long as a real one, and the resources it holds afterwards.</summary>
[Collection(TorchCollection.Name)]
public sealed class GradualPrunerLongRunTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pruning-long-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Resident set size of this process, from /proc (Linux); 0 elsewhere.</summary>
    private static long ResidentBytes()
    {
        if (!File.Exists("/proc/self/statm")) return 0;
        long pages = long.Parse(File.ReadAllText("/proc/self/statm").Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        return pages * Environment.SystemPageSize;
    }

    private static (long Tensors, long Resident) Settled()
    {
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        return (torch.Tensor.TotalCount, ResidentBytes());
    }

    /// <summary>
    /// 10,000 steps with Adam, the Taylor criterion, a mask update every 100 steps and a checkpoint saved and loaded
    /// every 1,000: from step 1,000 to step 10,000 the live TorchSharp tensors may grow by at most 20 (measured: 0)
    /// and the resident memory by at most 64 MiB, both after collecting garbage.
    /// </summary>
    [Fact]
    public void Ten_thousand_steps_hold_the_live_tensor_count_and_resident_memory_flat()
    {
        var model = TestModels.Mlp(81);
        var optimizer = SafeOptim.Adam(model.parameters(), 0.01);
        using var pruner = new GradualPruner(model, new PruningOptions
        {
            Schedule = new PolynomialDecaySchedule(0, 0.8, 100, 9_000, 100),
            Criterion = new Pruning.Criteria.TaylorCriterion(),
        }, optimizer);
        string checkpoint = Path.Combine(_dir, "run.pruning");
        (long Tensors, long Resident) atThousand = default;
        for (int step = 0; step < 10_000; step++)
        {
            TestModels.TrainStep(model, optimizer, step % 50);
            pruner.Step();
            if ((step + 1) % 1_000 == 0)
            {
                pruner.Save(checkpoint);
                pruner.Load(checkpoint);
                if (step + 1 == 1_000) atThousand = Settled();
            }
        }
        var atEnd = Settled();
        pruner.Report().Sparsity.Should().BeApproximately(0.8, 0.001);
        (atEnd.Tensors - atThousand.Tensors).Should().BeLessThanOrEqualTo(20, $"live tensors went from {atThousand.Tensors} to {atEnd.Tensors}");
        (atEnd.Resident - atThousand.Resident).Should().BeLessThan(64L << 20, $"resident memory went from {atThousand.Resident >> 20} MiB to {atEnd.Resident >> 20} MiB");
    }

    [Fact]
    public void Shrinking_leaves_no_temporary_tensor_behind()
    {
        var model = nn.Sequential(("conv1", nn.Conv2d(1, 8, 3, padding: 1)), ("bn1", nn.BatchNorm2d(8)), ("relu1", nn.ReLU()),
            ("flat", nn.Flatten()), ("fc1", nn.Linear(8 * 4 * 4, 6)), ("relu2", nn.ReLU()), ("fc2", nn.Linear(6, 3)));
        ChannelGraph channels;
        using (var example = torch.randn(2, 1, 4, 4)) channels = ChannelGraph.Trace(model, example);
        using (torch.no_grad())
            foreach (string name in new[] { "conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias" })
                model.get_parameter(name)!.narrow(0, 0, 3).zero_();
        // A module's parameters never join a dispose scope; any other tensor shrinking made outside its own scopes and
        // did not dispose would land in this one.
        using (var scope = torch.NewDisposeScope())
        {
            channels.ShrinkInPlace();
            scope.DisposablesCount.Should().Be(0, "ShrinkInPlace disposes its temporaries itself");
        }
        model.get_parameter("conv1.weight")!.shape[0].Should().Be(5);
    }
}
