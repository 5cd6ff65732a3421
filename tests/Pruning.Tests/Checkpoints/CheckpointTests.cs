using Pruning.Scheduling;
using Pruning.Selection;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Checkpoints;

[Collection(TorchCollection.Name)]
public sealed class CheckpointTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pruning-ckpt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static PruningOptions Options(PruningScope scope = PruningScope.LayerWise) =>
        new() { Schedule = new PolynomialDecaySchedule(0.1, 0.85, 4, 40, 6), Scope = scope };

    private static Dictionary<string, float[]> Snapshot(nn.Module model) =>
        model.named_parameters().ToDictionary(p => p.name, p => TestModels.Values(p.parameter));

    /// <summary>A run of <paramref name="total"/> steps, straight through and stopped at <paramref name="stopAt"/> then
    /// resumed from the model's, the optimizer's and the pruner's checkpoints into a differently initialised model.</summary>
    private sealed record Runs(Sequential Straight, GradualPruner StraightPruner, Sequential Resumed, GradualPruner ResumedPruner) : IDisposable
    {
        public void Dispose()
        {
            StraightPruner.Dispose();
            ResumedPruner.Dispose();
        }
    }

    private Runs StraightAndResumed(Func<PruningOptions> options, string optimizerKind, int total, int stopAt, int seed)
    {
        var straight = TestModels.Mlp(seed);
        var straightOptimizer = TestModels.Optimizer(optimizerKind, straight);
        var straightPruner = new GradualPruner(straight, options(), straightOptimizer);
        for (int step = 0; step < total; step++)
        {
            TestModels.TrainStep(straight, straightOptimizer, step);
            straightPruner.Step();
        }

        string model = Path.Combine(_dir, "model.bin"), optimizerState = Path.Combine(_dir, "optimizer.bin"), masks = Path.Combine(_dir, "model.pruning");
        {
            var first = TestModels.Mlp(seed);
            var optimizer = TestModels.Optimizer(optimizerKind, first);
            using var pruner = new GradualPruner(first, options(), optimizer);
            for (int step = 0; step < stopAt; step++)
            {
                TestModels.TrainStep(first, optimizer, step);
                pruner.Step();
            }
            first.save(model);
            ((OptimizerHelper)optimizer).save_state_dict(optimizerState);
            pruner.Save(masks);
        }

        var resumed = TestModels.Mlp(seed + 1000); // different initial weights: everything must come from the checkpoints
        var resumedOptimizer = TestModels.Optimizer(optimizerKind, resumed);
        resumed.load(model);
        ((OptimizerHelper)resumedOptimizer).load_state_dict(optimizerState);
        var resumedPruner = new GradualPruner(resumed, options(), resumedOptimizer);
        resumedPruner.Load(masks);
        resumedPruner.CurrentStep.Should().Be(stopAt);
        for (int step = stopAt; step < total; step++)
        {
            TestModels.TrainStep(resumed, resumedOptimizer, step);
            resumedPruner.Step();
        }
        return new Runs(straight, straightPruner, resumed, resumedPruner);
    }

    [Theory]
    [InlineData("adam", PruningScope.LayerWise)]
    [InlineData("sgd-momentum", PruningScope.Global)]
    public void Resume_FromCheckpoint_GivesBitIdenticalWeightsAndMasks(string optimizerKind, PruningScope scope)
    {
        using var runs = StraightAndResumed(() => Options(scope), optimizerKind, total: 50, stopAt: 23, seed: 31);

        var expected = Snapshot(runs.Straight);
        foreach (var (name, values) in Snapshot(runs.Resumed))
            values.Should().Equal(expected[name], $"{name} after resuming at step 23");
        runs.ResumedPruner.Report().Should().BeEquivalentTo(runs.StraightPruner.Report());
        runs.ResumedPruner.Updates.Select(u => u.Step).Should().Equal(runs.StraightPruner.Updates.Select(u => u.Step).Where(s => s >= 23));
    }

    [Theory]
    [InlineData("fisher")]
    [InlineData("random")]
    public void Resume_WithAStatefulCriterion_IsBitIdentical(string criterion)
    {
        // Updates every 6 steps from step 4; stopping at step 13 cuts a window in half, so the accumulated
        // gradients (or the generator's position) must come back from the checkpoint.
        PruningOptions Make() => new()
        {
            Schedule = new PolynomialDecaySchedule(0.1, 0.8, 4, 22, 6),
            Criterion = criterion == "fisher" ? new Pruning.Criteria.FisherCriterion() : new Pruning.Criteria.RandomCriterion(99),
        };
        using var runs = StraightAndResumed(Make, "adam", total: 30, stopAt: 13, seed: 51);

        var expected = Snapshot(runs.Straight);
        foreach (var (name, values) in Snapshot(runs.Resumed))
            values.Should().Equal(expected[name], name);
    }

    [Theory]
    [InlineData("obs")]
    [InlineData("wanda")]
    public void Resume_InTheMiddleOfACalibrationWindow_IsBitIdentical(string criterion)
    {
        // Updates at 4, 10, 16, 22; each calibrates on the inputs of its last 4 training steps. Stopping at step 15
        // cuts the window of step 16 after two of its steps, so H must come back from the checkpoint.
        PruningOptions Make() => new()
        {
            Schedule = new PolynomialDecaySchedule(0.1, 0.8, 4, 22, 6),
            Policy = criterion == "obs" ? new Pruning.Reconstruction.ObsPolicy { WindowBatches = 4 } : new Pruning.Reconstruction.WandaPolicy { WindowBatches = 4 },
        };
        using var runs = StraightAndResumed(Make, "adam", total: 30, stopAt: 15, seed: 52);

        var expected = Snapshot(runs.Straight);
        foreach (var (name, values) in Snapshot(runs.Resumed))
            values.Should().Equal(expected[name], name);
        runs.ResumedPruner.Report().Should().BeEquivalentTo(runs.StraightPruner.Report());
    }

    [Fact]
    public void Resume_WithAnIterativeSchedule_IsBitIdentical()
    {
        // Stages cut at steps 3, 10, 17 and 24; stopping at 13 resumes in the middle of the second fine-tuning stage.
        PruningOptions Make() => new() { Schedule = new IterativeSchedule([0.3, 0.5, 0.7, 0.85], beginStep: 3, stepsPerStage: 7) };
        using var runs = StraightAndResumed(Make, "sgd-momentum", total: 30, stopAt: 13, seed: 61);

        var expected = Snapshot(runs.Straight);
        foreach (var (name, values) in Snapshot(runs.Resumed))
            values.Should().Equal(expected[name], name);
        runs.ResumedPruner.Report().Sparsity.Should().BeApproximately(0.85, 0.01);
    }

    [Fact]
    public void ACheckpointWithoutCriterionState_IsRejectedByAStatefulCriterion()
    {
        string path = SavedCheckpoint();
        LoadInto(path, options: new PruningOptions { Schedule = new OneShotSchedule(0.5), Criterion = new Pruning.Criteria.TaylorCriterion() })
            .Should().Throw<InvalidDataException>().WithMessage("*criterion Magnitude*Taylor*");
    }

    [Fact]
    public void Save_DoesNotChangeTheModelsStateDict()
    {
        var model = TestModels.Mlp(32);
        var keys = model.state_dict().Keys.ToList();
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5) });
        pruner.Step();
        pruner.Save(Path.Combine(_dir, "p.pruning"));
        model.state_dict().Keys.Should().Equal(keys);
        model.buffers().Should().BeEmpty();
    }

    [Fact]
    public void Load_BeforeTheFirstUpdate_RestoresAnUnprunedState()
    {
        var model = TestModels.Mlp(33);
        using var pruner = new GradualPruner(model, Options());
        pruner.Step();
        string path = Path.Combine(_dir, "early.pruning");
        pruner.Save(path);

        using var other = new GradualPruner(TestModels.Mlp(33), Options());
        other.Load(path);
        other.CurrentStep.Should().Be(1);
        other.Report().Sparsity.Should().Be(0);
    }

    private string SavedCheckpoint()
    {
        var model = TestModels.Mlp(34);
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5) });
        pruner.Step();
        string path = Path.Combine(_dir, "valid.pruning");
        pruner.Save(path);
        return path;
    }

    private static Action LoadInto(string path, nn.Module? model = null, PruningOptions? options = null) => () =>
    {
        using var pruner = new GradualPruner(model ?? TestModels.Mlp(35), options ?? new PruningOptions { Schedule = new OneShotSchedule(0.5) });
        pruner.Load(path);
    };

    [Fact]
    public void ACheckpointOfAnotherModel_IsRejectedNamingTheFileAndTheParameter()
    {
        string path = SavedCheckpoint();
        LoadInto(path, TestModels.Mlp(36, inputs: 20)).Should().Throw<InvalidDataException>()
            .WithMessage($"*'{path}' does not match*'fc1.weight'*shape [32, 16]*[32, 20]*");
        LoadInto(path, nn.Sequential(("fc1", nn.Linear(16, 32)))).Should().Throw<InvalidDataException>()
            .WithMessage("*holds [fc1.weight, fc2.weight, fc3.weight], this pruner prunes [fc1.weight]*");
    }

    [Fact]
    public void ACheckpointWithAnotherScheduleScopeOrGranularity_IsRejected()
    {
        string path = SavedCheckpoint();
        LoadInto(path, options: new PruningOptions { Schedule = new OneShotSchedule(0.6) }).Should().Throw<InvalidDataException>()
            .WithMessage("*OneShot(sparsity=0.5, step=0)*OneShot(sparsity=0.6, step=0)*");
        LoadInto(path, options: new PruningOptions { Schedule = new OneShotSchedule(0.5), Scope = PruningScope.Global }).Should().Throw<InvalidDataException>()
            .WithMessage("*scope LayerWise*Global*");
        LoadInto(path, options: new PruningOptions { Schedule = new OneShotSchedule(0.5), Granularity = Pruning.Grouping.PruningGranularity.OutputChannels() }).Should().Throw<InvalidDataException>()
            .WithMessage("*granularity Element*OutputChannels(norm=L1)*");
    }

    [Fact]
    public void ATruncatedCheckpoint_IsRejected()
    {
        string path = SavedCheckpoint();
        byte[] bytes = File.ReadAllBytes(path);
        foreach (int length in new[] { 0, 7, 23, 24, bytes.Length / 2, bytes.Length - 1 })
        {
            File.WriteAllBytes(path, bytes[..length]);
            LoadInto(path).Should().Throw<InvalidDataException>().WithMessage($"*'{path}' is invalid*", $"length {length}");
        }
    }

    [Fact]
    public void EveryFlippedByte_IsCaught()
    {
        string path = SavedCheckpoint();
        byte[] bytes = File.ReadAllBytes(path);
        for (int i = 0; i < bytes.Length; i += Math.Max(1, bytes.Length / 97))
        {
            byte[] corrupted = (byte[])bytes.Clone();
            corrupted[i] ^= 0x10;
            File.WriteAllBytes(path, corrupted);
            LoadInto(path).Should().Throw<InvalidDataException>($"byte {i} was flipped");
        }
    }

    [Fact]
    public void ANewerFormatVersion_IsRejectedByVersion()
    {
        string path = SavedCheckpoint();
        byte[] bytes = File.ReadAllBytes(path);
        bytes[8] = 9;
        File.WriteAllBytes(path, bytes);
        LoadInto(path).Should().Throw<InvalidDataException>().WithMessage("*format version is 9; this library reads version 4*");
    }

    [Fact]
    public void AVersion3Checkpoint_FromEarlierReleases_StillLoads()
    {
        // Version 3 framed the same body behind a u64 length, with the CRC over the body alone.
        string path = Path.Combine(_dir, "v3.pruning");
        Dictionary<string, float[]> saved;
        using (var original = new GradualPruner(TestModels.Mlp(34), new PruningOptions { Schedule = new OneShotSchedule(0.5) }))
        {
            original.Step();
            original.Save(path);
            saved = original.ParameterNames.ToDictionary(n => n, n => { using var m = original.Mask(n); return m.data<float>().ToArray(); });
        }
        byte[] current = File.ReadAllBytes(path);
        byte[] body = current[12..^4];
        using (var file = File.Create(path))
        using (var w = new BinaryWriter(file))
        {
            w.Write("PRUNECKP"u8);
            w.Write(3u);
            w.Write((ulong)body.Length);
            w.Write(body);
            w.Write(Pruning.Sparse.Serialization.Crc32.Compute(body));
        }
        var model = TestModels.Mlp(37);
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5) });
        pruner.Load(path);
        pruner.CurrentStep.Should().Be(1);
        foreach (var (name, keep) in saved)
        {
            using var mask = pruner.Mask(name);
            mask.data<float>().ToArray().Should().Equal(keep, name);
        }
        // A damaged body under the old frame is still caught by its checksum.
        byte[] old = File.ReadAllBytes(path);
        old[30] ^= 1;
        File.WriteAllBytes(path, old);
        LoadInto(path).Should().Throw<InvalidDataException>().WithMessage("*checksum does not match*");
    }

    [Fact]
    public void AMissingCheckpoint_NamesThePath()
    {
        string path = Path.Combine(_dir, "nope.pruning");
        LoadInto(path).Should().Throw<FileNotFoundException>().WithMessage($"*'{path}'*");
    }

    [Fact]
    public void AFailedLoad_LeavesThePrunerAsItWas()
    {
        var model = TestModels.Mlp(37);
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5) });
        pruner.Step();
        var before = pruner.Report();
        string path = Path.Combine(_dir, "garbage.pruning");
        File.WriteAllText(path, "not a checkpoint at all, just some text that is long enough");
        ((Action)(() => pruner.Load(path))).Should().Throw<InvalidDataException>().WithMessage("*does not start with \"PRUNECKP\"*");
        pruner.Report().Should().BeEquivalentTo(before);
        pruner.CurrentStep.Should().Be(1);
    }
}
