using System.Text;
using Pruning.Configuration;
using Pruning.Selection;
using Pruning.Sparse.Serialization;

namespace Pruning.Checkpoints;

/// <summary>The saved state of one pruned parameter.</summary>
internal sealed record SavedMask(string Name, ComponentConfig Schedule, long[] Shape, double Target, long LastUpdateStep, bool[]? Keep);

/// <summary>Everything a pruner needs to resume: the step, how it was configured, and the masks.</summary>
internal sealed record SavedPruner(long Step, PruningScope Scope, ComponentConfig Criterion, ComponentConfig Granularity, IReadOnlyList<SavedMask> Masks, byte[]? CriterionState);

/// <summary>
/// The pruner's checkpoint file, kept next to the model's own checkpoint so the model's state_dict stays plain.
/// Framed as every file of the library (<see cref="FileFrame"/>: "PRUNECKP", u32 version 4, body, CRC-32); version 3
/// (the same body behind a u64 length, the CRC over the body alone) still loads. The body holds the step, the scope,
/// the criterion's and granularity's configs, then per mask its name, schedule config, shape, target, last update step
/// and keep-flags (one bit per element, 1 = kept), then the criterion's state. The reader treats the file as
/// untrusted: the file may not be larger than the pruner that reads it can need, and every length is checked against
/// what is left before anything is allocated.
/// </summary>
internal static class PrunerCheckpoint
{
    private const uint FormatVersion = 4;
    private const uint LegacyVersion = 3;
    private static readonly byte[] Magic = "PRUNECKP"u8.ToArray();
    private const int LegacyHeaderBytes = 8 + 4 + 8;
    private const int MaxRank = 16;
    private const int MaxNameLength = 4096;

    /// <summary>
    /// The largest checkpoint a pruner of these parameters can need: names and configs, one bit per element for the
    /// masks, and up to 16 bytes per element for the criterion's state (a float64 sum needs 8).
    /// </summary>
    public static long MaxBytes(IEnumerable<long> parameterSizes) =>
        (1 << 20) + parameterSizes.Sum(n => (n + 7) / 8 + 16 * n + 64 * 1024);

    public static void Write(string path, SavedPruner state) => FileFrame.Save(FileFrame.Checksummed(Magic, FormatVersion, w => WriteBody(w, state)), path);

    private static void WriteBody(BinaryWriter w, SavedPruner state)
    {
        w.Write(state.Step);
        w.Write((int)state.Scope);
        state.Criterion.Write(w);
        state.Granularity.Write(w);
        w.Write(state.Masks.Count);
        foreach (SavedMask m in state.Masks)
        {
            w.Write(m.Name);
            m.Schedule.Write(w);
            w.Write(m.Shape.Length);
            foreach (long d in m.Shape) w.Write(d);
            w.Write(m.Target);
            w.Write(m.LastUpdateStep);
            w.Write(m.Keep is not null);
            if (m.Keep is not null) w.Write(Pack(m.Keep));
        }
        w.Write(state.CriterionState is not null);
        if (state.CriterionState is not null)
        {
            w.Write(state.CriterionState.Length);
            w.Write(state.CriterionState);
        }
    }

    /// <summary>Reads and checks a checkpoint of at most <paramref name="maxBytes"/> bytes.</summary>
    /// <exception cref="FileNotFoundException">There is no such file.</exception>
    /// <exception cref="InvalidDataException">The file is not a valid checkpoint; the message names it and the problem.</exception>
    public static SavedPruner Read(string path, long maxBytes)
    {
        byte[] bytes = FileFrame.ReadFile(path, maxBytes, "Pruning checkpoint", (problem, _) => Bad(path, problem));
        int offset, length;
        if (bytes.Length >= LegacyHeaderBytes + 4 && bytes.AsSpan(0, 8).SequenceEqual(Magic) && BitConverter.ToUInt32(bytes, 8) == LegacyVersion)
        {
            ulong declared = BitConverter.ToUInt64(bytes, 12);
            if (declared != (ulong)(bytes.Length - LegacyHeaderBytes - 4))
                throw Bad(path, $"the payload should be {declared} bytes but the file holds {bytes.Length - LegacyHeaderBytes - 4} (truncated or extended)");
            (offset, length) = (LegacyHeaderBytes, bytes.Length - LegacyHeaderBytes - 4);
            if (Crc32.Compute(bytes.AsSpan(offset, length)) != BitConverter.ToUInt32(bytes, bytes.Length - 4))
                throw Bad(path, "its checksum does not match (the file is corrupted)");
        }
        else
        {
            FileFrame.Payload(bytes, Magic, FormatVersion, FormatVersion, 0, (problem, _) => Bad(path, problem), out _);
            (offset, length) = (FileFrame.HeaderBytes, bytes.Length - FileFrame.HeaderBytes - 4);
        }

        try
        {
            using var r = new BinaryReader(new MemoryStream(bytes, offset, length, writable: false), Encoding.UTF8);
            long remaining() => r.BaseStream.Length - r.BaseStream.Position;
            long step = r.ReadInt64();
            if (step < 0) throw Bad(path, $"it claims step {step}");
            var scope = (PruningScope)r.ReadInt32();
            if (!Enum.IsDefined(scope)) throw Bad(path, $"it claims scope {(int)scope}");
            ComponentConfig criterion = ComponentConfig.Read(r);
            ComponentConfig granularity = ComponentConfig.Read(r);
            int count = r.ReadInt32();
            if (count < 0 || count > remaining())
                throw Bad(path, $"it claims {count} masks");
            var masks = new List<SavedMask>(count);
            for (int i = 0; i < count; i++)
            {
                string name = r.ReadString();
                if (name.Length == 0 || name.Length > MaxNameLength) throw Bad(path, $"mask {i} has a name of {name.Length} characters");
                ComponentConfig schedule = ComponentConfig.Read(r);
                int rank = r.ReadInt32();
                if (rank < 0 || rank > MaxRank)
                    throw Bad(path, $"mask '{name}' claims rank {rank}");
                var shape = new long[rank];
                long numel = 1;
                for (int d = 0; d < rank; d++)
                {
                    shape[d] = r.ReadInt64();
                    if (shape[d] < 0 || (shape[d] > 0 && numel > Array.MaxLength / shape[d]))
                        throw Bad(path, $"mask '{name}' has an impossible shape");
                    numel *= shape[d];
                }
                double target = r.ReadDouble();
                long last = r.ReadInt64();
                bool[]? keep = null;
                if (r.ReadBoolean())
                {
                    long packed = (numel + 7) / 8;
                    if (packed > remaining())
                        throw Bad(path, $"mask '{name}' needs {packed} bytes but only {remaining()} remain");
                    keep = Unpack(r.ReadBytes((int)packed), numel);
                }
                masks.Add(new SavedMask(name, schedule, shape, target, last, keep));
            }
            byte[]? criterionState = null;
            if (r.ReadBoolean())
            {
                int stateLength = r.ReadInt32();
                if (stateLength < 0 || stateLength > remaining())
                    throw Bad(path, $"the criterion state claims {stateLength} bytes but only {remaining()} remain");
                criterionState = r.ReadBytes(stateLength);
            }
            if (remaining() != 0)
                throw Bad(path, $"{remaining()} unexpected bytes follow the criterion state");
            return new SavedPruner(step, scope, criterion, granularity, masks, criterionState);
        }
        catch (EndOfStreamException)
        {
            throw Bad(path, "a record ends before its data");
        }
        catch (FormatException)
        {
            throw Bad(path, "a text's length is malformed");
        }
        catch (InvalidDataException e) when (!e.Message.StartsWith("Pruning checkpoint", StringComparison.Ordinal))
        {
            throw Bad(path, e.Message);
        }
    }

    /// <summary>
    /// Checks that <paramref name="saved"/> was written by a pruner configured like <paramref name="plan"/> and that its
    /// masks are ones a pruner can hold (each keeps at least one element, targets in [0, 1), updates not after the step).
    /// </summary>
    /// <exception cref="InvalidDataException">It does not match, naming the file and what differs.</exception>
    public static void Verify(SavedPruner saved, ResolvedPruning plan, string path)
    {
        InvalidDataException Mismatch(string what) => new($"Pruning checkpoint '{path}' does not match this pruner: {what}.");
        if (saved.Scope != plan.Scope)
            throw Mismatch($"it was saved with scope {saved.Scope}, this pruner uses {plan.Scope}");
        if (saved.Criterion != plan.Policy.Config)
            throw Mismatch($"it was saved with criterion {saved.Criterion}, this pruner uses {plan.Policy.Config}");
        if (saved.Granularity != plan.Granularity.Config)
            throw Mismatch($"it was saved with granularity {saved.Granularity}, this pruner uses {plan.Granularity.Config}");
        var savedNames = saved.Masks.Select(m => m.Name).ToList();
        if (!savedNames.SequenceEqual(plan.Parameters.Select(p => p.Name)))
            throw Mismatch($"it holds [{string.Join(", ", savedNames)}], this pruner prunes [{string.Join(", ", plan.Parameters.Select(p => p.Name))}]");
        for (int i = 0; i < plan.Parameters.Count; i++)
        {
            SavedMask s = saved.Masks[i];
            ResolvedParameter p = plan.Parameters[i];
            if (!s.Shape.SequenceEqual(p.Shape))
                throw Mismatch($"'{s.Name}' has shape [{string.Join(", ", s.Shape)}] there and [{string.Join(", ", p.Shape)}] here");
            if (s.Schedule != p.Schedule.Config)
                throw Mismatch($"'{s.Name}' was scheduled {s.Schedule}, this pruner schedules {p.Schedule.Config}");
            if (s.Keep is not null && Array.IndexOf(s.Keep, true) < 0)
                throw Bad(path, $"the mask of '{s.Name}' prunes every element; a pruner always keeps at least one");
            if ((s.Keep is not null) != (s.LastUpdateStep >= 0) || s.LastUpdateStep >= saved.Step)
                throw Bad(path, $"the mask of '{s.Name}' was last updated at step {s.LastUpdateStep}, which does not fit step {saved.Step}");
            if (!(double.IsNaN(s.Target) && s.Keep is null) && !(s.Target >= 0 && s.Target < 1))
                throw Bad(path, $"the mask of '{s.Name}' has target {s.Target}");
        }
    }

    private static InvalidDataException Bad(string path, string what) => new($"Pruning checkpoint '{path}' is invalid: {what}.");

    private static byte[] Pack(bool[] flags)
    {
        var packed = new byte[(flags.Length + 7) / 8];
        for (int i = 0; i < flags.Length; i++)
            if (flags[i]) packed[i >> 3] |= (byte)(1 << (i & 7));
        return packed;
    }

    private static bool[] Unpack(byte[] packed, long count)
    {
        var flags = new bool[count];
        for (int i = 0; i < flags.Length; i++)
            flags[i] = ((packed[i >> 3] >> (i & 7)) & 1) != 0;
        return flags;
    }
}
