using System.Buffers.Binary;
using Pruning.Checkpoints;
using Pruning.Criteria;
using Pruning.Scheduling;
using Pruning.Sparse.Serialization;

namespace Pruning.Tests.Checkpoints;

/// <summary>The checkpoint reader against hostile files: every outcome is a clean InvalidDataException, with bounded allocation.</summary>
[Collection(TorchCollection.Name)]
public sealed class PrunerCheckpointTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pruning-ckpt-fuzz-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static PruningOptions FisherOptions() => new() { Schedule = new PolynomialDecaySchedule(0.2, 0.8, 2, 8, 2), Criterion = new FisherCriterion() };

    /// <summary>A checkpoint with masks and Fisher state (one step into a window), taken mid-schedule.</summary>
    private string Saved()
    {
        var model = TestModels.Mlp(71);
        var optimizer = TestModels.Optimizer("adam", model);
        using var pruner = new GradualPruner(model, FisherOptions(), optimizer);
        for (int step = 0; step < 6; step++)
        {
            TestModels.TrainStep(model, optimizer, step);
            pruner.Step();
        }
        string path = Path.Combine(_dir, "valid.pruning");
        pruner.Save(path);
        return path;
    }

    private static void Load(string path)
    {
        var model = TestModels.Mlp(72);
        using var pruner = new GradualPruner(model, FisherOptions());
        pruner.Load(path);
        foreach (string name in pruner.ParameterNames)
        {
            using var mask = pruner.Mask(name);
            mask.sum().item<float>().Should().BeGreaterThan(0, $"a loaded mask of '{name}' keeps at least one weight");
        }
    }

    private static void Rewrite(string path, Func<SavedPruner, SavedPruner> change) =>
        PrunerCheckpoint.Write(path, change(PrunerCheckpoint.Read(path, long.MaxValue)));

    [Fact]
    public void A_mask_that_prunes_every_element_is_refused()
    {
        string path = Saved();
        Rewrite(path, s => s with { Masks = [s.Masks[0] with { Keep = new bool[s.Masks[0].Keep!.Length] }, .. s.Masks.Skip(1)] });
        FluentActions.Invoking(() => Load(path)).Should().Throw<InvalidDataException>().WithMessage($"*'{path}'*'fc1.weight' prunes every element*");
    }

    [Fact]
    public void A_mask_updated_after_the_saved_step_is_refused()
    {
        string path = Saved();
        Rewrite(path, s => s with { Masks = [s.Masks[0] with { LastUpdateStep = s.Step + 3 }, .. s.Masks.Skip(1)] });
        FluentActions.Invoking(() => Load(path)).Should().Throw<InvalidDataException>().WithMessage("*'fc1.weight' was last updated at step 9*step 6*");
    }

    [Fact]
    public void Criterion_state_for_another_parameter_or_shape_is_refused_and_the_pruner_keeps_its_state()
    {
        string path = Saved();
        SavedPruner saved = PrunerCheckpoint.Read(path, long.MaxValue);
        byte[] state = saved.CriterionState!;
        // The state starts with the entry count, then the first entry's name ("fc1.weight", 7-bit length prefix).
        state[5].Should().Be((byte)'f');
        byte[] renamed = (byte[])state.Clone();
        renamed[5 + 2] = (byte)'9';   // "fc9.weight"
        PrunerCheckpoint.Write(path, saved with { CriterionState = renamed });
        FluentActions.Invoking(() => Load(path)).Should().Throw<InvalidDataException>().WithMessage("*'fc9.weight'*not a pruned parameter*");

        byte[] reshaped = (byte[])state.Clone();
        // After the entry count (4), the name (1 + 10 bytes), the step count (8) and the dtype (4): rank (4), then the first dimension (8).
        int firstDim = 4 + 11 + 8 + 4 + 4;
        BinaryPrimitives.ReadInt64LittleEndian(reshaped.AsSpan(firstDim)).Should().Be(32);
        BinaryPrimitives.WriteInt64LittleEndian(reshaped.AsSpan(firstDim), 31);
        PrunerCheckpoint.Write(path, saved with { CriterionState = reshaped });
        FluentActions.Invoking(() => Load(path)).Should().Throw<InvalidDataException>().WithMessage("*'fc1.weight'*[31, 16]*[32, 16]*");
    }

    [Fact]
    public void Policy_state_with_an_entry_twice_or_cut_short_is_refused_and_the_pruner_keeps_its_state()
    {
        // Wanda keeps one window of input statistics per weight; updates at 4 and 10 calibrate on the 4 steps before.
        PruningOptions Options() => new() { Schedule = new PolynomialDecaySchedule(0.2, 0.8, 4, 10, 6), Policy = new Pruning.Reconstruction.WandaPolicy { WindowBatches = 4 } };
        var model = TestModels.Mlp(73);
        var optimizer = TestModels.Optimizer("adam", model);
        string path = Path.Combine(_dir, "wanda.pruning");
        using (var pruner = new GradualPruner(model, Options(), optimizer))
        {
            for (int step = 0; step < 8; step++)
            {
                TestModels.TrainStep(model, optimizer, step);
                pruner.Step();
            }
            pruner.Save(path);
        }
        SavedPruner saved = PrunerCheckpoint.Read(path, long.MaxValue);
        byte[] state = saved.CriterionState!;
        BinaryPrimitives.ReadInt32LittleEndian(state).Should().Be(3, "the three weights are in their window at step 8");

        // The first entry in place of the second. An entry: name (1-byte length here), rows, columns, diagonal flag, columns float64s.
        int Length(int at) => 1 + state[at] + 17 + 8 * (int)BinaryPrimitives.ReadInt64LittleEndian(state.AsSpan(at + 1 + state[at] + 8));
        int second = 4 + Length(4), third = second + Length(second);
        byte[] twice = [.. state.AsSpan(0, second), .. state.AsSpan(4, second - 4), .. state.AsSpan(third)];
        var resumed = TestModels.Mlp(74);
        using var other = new GradualPruner(resumed, Options());
        other.Load(path);
        PrunerCheckpoint.Write(path, saved with { CriterionState = twice });
        FluentActions.Invoking(() => other.Load(path)).Should().Throw<InvalidDataException>().WithMessage($"*'{path}'*Wanda*holds '{saved.Masks[0].Name}' twice*");
        PrunerCheckpoint.Write(path, saved with { CriterionState = state[..^9] });
        FluentActions.Invoking(() => other.Load(path)).Should().Throw<InvalidDataException>().WithMessage("*inputs of*truncated*");

        // The refused loads left the pruner as the good load made it: it continues exactly like the original run.
        other.CurrentStep.Should().Be(8);
        PrunerCheckpoint.Write(path, saved);
        using var again = new GradualPruner(TestModels.Mlp(74), Options());
        again.Load(path);
        other.Mask(saved.Masks[0].Name).sum().item<float>().Should().Be(again.Mask(saved.Masks[0].Name).sum().item<float>());
    }

    [Fact]
    public void A_file_larger_than_the_pruner_can_need_is_refused_before_it_is_read()
    {
        string path = Path.Combine(_dir, "huge.pruning");
        using (var file = File.Create(path)) file.SetLength(4L << 30); // sparse: no disk is used
        long before = GC.GetAllocatedBytesForCurrentThread();
        FluentActions.Invoking(() => Load(path)).Should().Throw<InvalidDataException>().WithMessage("*4294967296 bytes, more than*");
        (GC.GetAllocatedBytesForCurrentThread() - before).Should().BeLessThan(4 << 20);
    }

    [Fact]
    public void Fuzzed_checkpoints_load_or_fail_cleanly_within_a_bounded_allocation()
    {
        string valid = Saved();
        byte[] original = File.ReadAllBytes(valid);
        Load(valid);
        var random = new Random(20261201);
        string path = Path.Combine(_dir, "fuzzed.pruning");
        int loaded = 0, refusedAfterChecksum = 0;
        for (int trial = 0; trial < 600; trial++)
        {
            byte[] bytes = Mutate(original, random);
            bool repair = trial % 2 == 0 && bytes.Length >= 16;
            if (repair)
                BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(bytes.Length - 4), Crc32.Compute(bytes.AsSpan(0, bytes.Length - 4)));
            File.WriteAllBytes(path, bytes);
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                Load(path);
                loaded++;
            }
            catch (InvalidDataException e)
            {
                e.Message.Should().Contain(path);
                if (repair && !e.Message.Contains("checksum")) refusedAfterChecksum++;
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            allocated.Should().BeLessThan(8L * bytes.Length + (4 << 20), $"trial {trial} ({bytes.Length} bytes)");
        }
        refusedAfterChecksum.Should().BeGreaterThan(50, "with the checksum repaired, the parser's own checks must catch the damage");
        loaded.Should().BeGreaterThan(0, "flipped mask bits with a repaired checksum are still a valid checkpoint");
    }

    private static byte[] Mutate(byte[] original, Random random)
    {
        byte[] bytes = (byte[])original.Clone();
        switch (random.Next(4))
        {
            case 0:
                for (int k = 0; k < 1 + random.Next(4); k++) bytes[random.Next(bytes.Length)] ^= (byte)(1 << random.Next(8));
                return bytes;
            case 1:
            {
                int at = random.Next(20, bytes.Length - 8);
                int[] extremes = [int.MaxValue, int.MinValue, -1, 0, 1 << 30, 65536, 17];
                BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(at), extremes[random.Next(extremes.Length)]);
                return bytes;
            }
            case 2:
                return bytes[..random.Next(bytes.Length)];
            default:
            {
                int at = random.Next(20, bytes.Length - 8);
                BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(at), random.NextInt64() >> random.Next(64));
                return bytes;
            }
        }
    }
}
