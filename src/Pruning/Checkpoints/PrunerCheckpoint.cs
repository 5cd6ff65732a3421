using System.Text;
using Pruning.Sparse.Serialization;

namespace Pruning.Checkpoints;

/// <summary>The saved state of one pruned parameter.</summary>
internal sealed record SavedMask(string Name, string Schedule, long[] Shape, double Target, long LastUpdateStep, byte[]? Pruned);

/// <summary>Everything a pruner needs to resume: the step, how it was configured, and the masks.</summary>
internal sealed record SavedPruner(long Step, string Scope, string Criterion, string Granularity, IReadOnlyList<SavedMask> Masks, byte[]? CriterionState);

/// <summary>
/// The pruner's checkpoint file, kept next to the model's own checkpoint so the model's state_dict stays plain.
/// Layout (little-endian): "PRUNECKP", u32 format version, u64 payload length, payload, u32 CRC-32 of the payload.
/// Masks are stored one bit per element. The reader treats the file as untrusted: every length is checked against
/// what is left of the file before anything is allocated.
/// </summary>
internal static class PrunerCheckpoint
{
    private const uint FormatVersion = 2;
    private static readonly byte[] Magic = "PRUNECKP"u8.ToArray();
    private const int MaxRank = 16;

    public static void Write(string path, SavedPruner state)
    {
        using var payload = new MemoryStream();
        using (var w = new BinaryWriter(payload, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(state.Step);
            w.Write(state.Scope);
            w.Write(state.Criterion);
            w.Write(state.Granularity);
            w.Write(state.Masks.Count);
            foreach (SavedMask m in state.Masks)
            {
                w.Write(m.Name);
                w.Write(m.Schedule);
                w.Write(m.Shape.Length);
                foreach (long d in m.Shape) w.Write(d);
                w.Write(m.Target);
                w.Write(m.LastUpdateStep);
                w.Write(m.Pruned is not null);
                if (m.Pruned is not null) w.Write(Pack(m.Pruned));
            }
            w.Write(state.CriterionState is not null);
            if (state.CriterionState is not null)
            {
                w.Write(state.CriterionState.Length);
                w.Write(state.CriterionState);
            }
        }

        // Write beside the target and move over it, so a crash never leaves a half-written checkpoint behind.
        string temp = path + ".tmp";
        using (var file = File.Create(temp))
        using (var w = new BinaryWriter(file))
        {
            w.Write(Magic);
            w.Write(FormatVersion);
            w.Write((ulong)payload.Length);
            w.Write(payload.GetBuffer(), 0, (int)payload.Length);
            w.Write(Crc32.Compute(payload.GetBuffer().AsSpan(0, (int)payload.Length)));
        }
        File.Move(temp, path, overwrite: true);
    }

    public static SavedPruner Read(string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException)
        {
            throw new FileNotFoundException($"Pruning checkpoint '{path}' does not exist.", path);
        }

        if (bytes.Length < 24 || !bytes.AsSpan(0, 8).SequenceEqual(Magic))
            throw Bad(path, "it is not a pruning checkpoint (no PRUNECKP header)");
        uint version = BitConverter.ToUInt32(bytes, 8);
        if (version != FormatVersion)
            throw Bad(path, $"format version {version} is not supported (this library reads version {FormatVersion})");
        ulong length = BitConverter.ToUInt64(bytes, 12);
        if (length != (ulong)(bytes.Length - 24))
            throw Bad(path, $"the payload should be {length} bytes but the file holds {bytes.Length - 24} (truncated or extended)");
        var payload = bytes.AsSpan(20, (int)length);
        if (Crc32.Compute(payload) != BitConverter.ToUInt32(bytes, bytes.Length - 4))
            throw Bad(path, "the checksum does not match (the file is corrupted)");

        try
        {
            using var r = new BinaryReader(new MemoryStream(bytes, 20, (int)length, writable: false), Encoding.UTF8);
            long remaining() => r.BaseStream.Length - r.BaseStream.Position;
            long step = r.ReadInt64();
            string scope = r.ReadString();
            string criterion = r.ReadString();
            string granularity = r.ReadString();
            int count = r.ReadInt32();
            if (count < 0 || count > remaining())
                throw Bad(path, $"it claims {count} masks");
            var masks = new List<SavedMask>(count);
            for (int i = 0; i < count; i++)
            {
                string name = r.ReadString();
                string schedule = r.ReadString();
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
                byte[]? pruned = null;
                if (r.ReadBoolean())
                {
                    long packed = (numel + 7) / 8;
                    if (packed > remaining())
                        throw Bad(path, $"mask '{name}' needs {packed} bytes but only {remaining()} remain");
                    pruned = Unpack(r.ReadBytes((int)packed), numel);
                }
                masks.Add(new SavedMask(name, schedule, shape, target, last, pruned));
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
    }

    private static InvalidDataException Bad(string path, string what) => new($"Pruning checkpoint '{path}' is invalid: {what}.");

    private static byte[] Pack(byte[] flags)
    {
        var packed = new byte[(flags.Length + 7) / 8];
        for (int i = 0; i < flags.Length; i++)
            if (flags[i] != 0) packed[i >> 3] |= (byte)(1 << (i & 7));
        return packed;
    }

    private static byte[] Unpack(byte[] packed, long count)
    {
        var flags = new byte[count];
        for (int i = 0; i < flags.Length; i++)
            flags[i] = (byte)((packed[i >> 3] >> (i & 7)) & 1);
        return flags;
    }
}
