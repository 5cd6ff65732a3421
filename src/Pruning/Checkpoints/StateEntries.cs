using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Checkpoints;

/// <summary>
/// The per-parameter entries of a scorer's or a policy's state in the pruner checkpoint: a count, then each entry's
/// parameter name and payload, in name order. Reading checks every name against the pruned parameters (each at most
/// once) and every tensor against the bytes left before allocating it; on any failure it releases what it read, so
/// the caller's state is replaced only by a whole, valid set.
/// </summary>
internal static class StateEntries
{
    /// <summary>Writes <paramref name="entries"/> (name order), each as its name followed by <paramref name="payload"/>.</summary>
    public static void Write<T>(BinaryWriter writer, IEnumerable<KeyValuePair<string, T>> entries, Action<T> payload)
    {
        ArgumentNullException.ThrowIfNull(writer);
        var ordered = entries.OrderBy(e => e.Key, StringComparer.Ordinal).ToList();
        writer.Write(ordered.Count);
        foreach (var (name, value) in ordered)
        {
            writer.Write(name);
            payload(value);
        }
    }

    /// <summary>
    /// Reads what <see cref="Write"/> wrote; <paramref name="payload"/> reads one entry given its name and parameter.
    /// Errors are <see cref="InvalidDataException"/>s that start with <paramref name="owner"/>.
    /// </summary>
    public static Dictionary<string, T> Read<T>(BinaryReader reader, IReadOnlyDictionary<string, Tensor> parameters, string owner,
        Func<string, Tensor, T> payload, Action<T> release)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ArgumentNullException.ThrowIfNull(parameters);
        int entries = reader.ReadInt32();
        if (entries < 0 || entries > parameters.Count)
            throw new InvalidDataException($"{owner}: the saved state claims {entries} entries; the pruner has {parameters.Count} parameters.");
        var loaded = new Dictionary<string, T>();
        try
        {
            for (int e = 0; e < entries; e++)
            {
                string name = reader.ReadString();
                if (!parameters.TryGetValue(name, out Tensor? parameter))
                    throw new InvalidDataException($"{owner}: the saved state names '{name}', which is not a pruned parameter.");
                if (loaded.ContainsKey(name))
                    throw new InvalidDataException($"{owner}: the saved state holds '{name}' twice.");
                loaded[name] = payload(name, parameter);
            }
            return loaded;
        }
        catch
        {
            foreach (T value in loaded.Values) release(value);
            throw;
        }
    }

    /// <summary>Writes a tensor's bytes (contiguous, from the host).</summary>
    public static void WriteTensor(BinaryWriter writer, Tensor tensor)
    {
        using var host = tensor.cpu().contiguous();
        writer.Write(host.bytes);
    }

    /// <summary>
    /// Reads a tensor of <paramref name="shape"/> and <paramref name="dtype"/> (float32 or float64) onto
    /// <paramref name="device"/>, after checking that its bytes are there.
    /// </summary>
    public static Tensor ReadTensor(BinaryReader reader, long[] shape, ScalarType dtype, Device device, string owner, string what)
    {
        long bytes = shape.Aggregate(dtype == ScalarType.Float64 ? 8L : 4L, (a, b) => a * b);
        if (bytes > reader.BaseStream.Length - reader.BaseStream.Position)
            throw new InvalidDataException($"{owner}: the checkpoint ends inside the saved {what} (truncated).");
        var host = torch.empty(shape, dtype);
        reader.BaseStream.ReadExactly(host.bytes);
        if (host.device == device) return host;
        using (host) return host.to(device);
    }
}
