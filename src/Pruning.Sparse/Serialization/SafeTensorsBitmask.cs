using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace Pruning.Sparse.Serialization;

/// <summary>One named float32 tensor for <see cref="SafeTensorsBitmask"/>; <paramref name="Compress"/> stores it in the bitmask layout.</summary>
internal sealed record NamedTensor(string Name, long[] Shape, float[] Values, bool Compress);

/// <summary>
/// Writes safetensors files in the "sparse-bitmask" layout of Neural Magic's compressed-tensors (what vLLM and
/// Hugging Face transformers load for sparse checkpoints): a compressed weight W of shape [rows, …] becomes
/// <c>{prefix}.shape</c> (I64), <c>{prefix}.compressed</c> (F32, the non-zeros row by row),
/// <c>{prefix}.bitmask</c> (U8 [rows, ⌈cols/8⌉], bit k of byte b is column 8b+k, little bit order) and
/// <c>{prefix}.row_offsets</c> (I64 [rows], where each row's values start), with prefix = the name without ".weight"
/// and cols = the product of the other dimensions. Other tensors are stored as plain F32.
/// </summary>
internal static class SafeTensorsBitmask
{
    /// <summary>Writes <paramref name="tensors"/> to <paramref name="path"/> (atomically).</summary>
    public static void Write(string path, IEnumerable<NamedTensor> tensors)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var entries = new List<(string Name, string Dtype, long[] Shape, byte[] Data)>();
        foreach (NamedTensor t in tensors)
        {
            long count = t.Shape.Aggregate(1L, (a, b) => a * b);
            if (t.Shape.Any(d => d < 0) || count != t.Values.Length)
                throw new ArgumentException($"Tensor '{t.Name}' has shape [{string.Join(", ", t.Shape)}] but {t.Values.Length} values.", nameof(tensors));
            if (!t.Compress || t.Shape.Length < 1)
            {
                entries.Add((t.Name, "F32", t.Shape, Bytes<float>(t.Values)));
                continue;
            }
            string prefix = t.Name.EndsWith(".weight", StringComparison.Ordinal) ? t.Name[..^".weight".Length] : t.Name;
            int rows = (int)t.Shape[0];
            int cols = rows == 0 ? 0 : (int)(count / rows);
            int stride = (cols + 7) / 8;
            var bitmask = new byte[(long)rows * stride];
            var offsets = new long[rows];
            var values = new List<float>();
            for (int r = 0; r < rows; r++)
            {
                offsets[r] = values.Count;
                for (int c = 0; c < cols; c++)
                {
                    float v = t.Values[(long)r * cols + c];
                    if (v == 0) continue;
                    values.Add(v);
                    bitmask[(long)r * stride + c / 8] |= (byte)(1 << (c % 8));
                }
            }
            entries.Add(($"{prefix}.shape", "I64", [t.Shape.Length], Bytes<long>(t.Shape)));
            entries.Add(($"{prefix}.compressed", "F32", [values.Count], Bytes<float>(values.ToArray())));
            entries.Add(($"{prefix}.bitmask", "U8", [rows, stride], bitmask));
            entries.Add(($"{prefix}.row_offsets", "I64", [rows], Bytes<long>(offsets)));
        }

        using var header = new MemoryStream();
        using (var json = new Utf8JsonWriter(header))
        {
            json.WriteStartObject();
            json.WriteStartObject("__metadata__");
            json.WriteString("format", "pt");
            json.WriteString("compression", "sparse-bitmask");
            json.WriteString("producer", "Pruning for TorchSharp");
            json.WriteEndObject();
            long offset = 0;
            foreach (var e in entries)
            {
                json.WriteStartObject(e.Name);
                json.WriteString("dtype", e.Dtype);
                json.WriteStartArray("shape");
                foreach (long d in e.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + e.Data.Length);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += e.Data.Length;
            }
            json.WriteEndObject();
        }
        // The header is padded with spaces to a multiple of 8 bytes, as the safetensors writer does.
        while (header.Length % 8 != 0) header.WriteByte((byte)' ');

        FileFrame.Save(path, file =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
            file.Write(length);
            file.Write(header.GetBuffer(), 0, (int)header.Length);
            foreach (var e in entries) file.Write(e.Data);
        });
    }

    private static byte[] Bytes<T>(T[] values) where T : unmanaged
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors files are little-endian; writing them needs a little-endian machine.");
        return System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
    }

    /// <summary>The JSON header of a safetensors file (for inspection and tests).</summary>
    public static JsonDocument ReadHeader(string path)
    {
        using var file = File.OpenRead(path);
        Span<byte> length = stackalloc byte[8];
        file.ReadExactly(length);
        ulong size = BinaryPrimitives.ReadUInt64LittleEndian(length);
        if (size > (ulong)Math.Min(file.Length - 8, 100_000_000))
            throw new InvalidDataException($"'{path}' is not a safetensors file: its header claims {size} bytes.");
        var header = new byte[size];
        file.ReadExactly(header);
        return JsonDocument.Parse(Encoding.UTF8.GetString(header).TrimEnd());
    }
}
