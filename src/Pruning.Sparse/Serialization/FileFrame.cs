using System.Buffers.Binary;
using System.Text;

namespace Pruning.Sparse.Serialization;

/// <summary>
/// What every model file of this library shares: an 8-byte magic, a u32 version, the payload, and a CRC-32 of all
/// before it, little-endian; written atomically, read from untrusted bytes with the size and checksum checked first.
/// </summary>
internal static class FileFrame
{
    /// <summary>The magic and the version.</summary>
    public const int HeaderBytes = 8 + 4;

    /// <summary>The file's bytes: header, the body <paramref name="write"/> writes, CRC-32.</summary>
    public static byte[] Checksummed(ReadOnlySpan<byte> magic, uint version, Action<BinaryWriter> write)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("Writing model files needs a little-endian machine.");
        using var buffer = new MemoryStream();
        using (var w = new BinaryWriter(buffer, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(magic);
            w.Write(version);
            write(w);
        }
        uint crc = Crc32.Compute(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
        Span<byte> tail = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(tail, crc);
        buffer.Write(tail);
        return buffer.ToArray();
    }

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/> through a temporary file and a rename, so a crash never leaves half a file.</summary>
    public static void Save(byte[] bytes, string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string temporary = path + ".tmp-" + Environment.ProcessId;
        try
        {
            File.WriteAllBytes(temporary, bytes);
            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
    }

    /// <summary>A file's bytes, refusing files larger than <paramref name="maxBytes"/> before reading them.</summary>
    public static byte[] ReadFile(string path, long maxBytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"Model file '{path}' does not exist.", path);
        if (info.Length > maxBytes) throw new SparseModelFormatException(path, $"it is {info.Length} bytes, more than the {maxBytes} a model file may have");
        return File.ReadAllBytes(path);
    }

    /// <summary>A stream's bytes, at most <paramref name="maxBytes"/> of them.</summary>
    public static byte[] ReadStream(Stream stream, string source, long maxBytes)
    {
        ArgumentNullException.ThrowIfNull(stream);
        using var buffer = new MemoryStream();
        var chunk = new byte[81920];
        int read;
        while ((read = stream.Read(chunk)) > 0)
        {
            if (buffer.Length + read > maxBytes) throw new SparseModelFormatException(source, $"it is longer than the {maxBytes} bytes a model file may have");
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }

    /// <summary>
    /// Checks the size, magic, version (from 1 to <paramref name="newest"/>) and checksum and returns everything before
    /// the checksum; the body starts at <see cref="HeaderBytes"/>. <paramref name="smallest"/> is the size of the
    /// smallest valid file; <paramref name="version"/> is the file's version.
    /// </summary>
    public static ReadOnlySpan<byte> Payload(ReadOnlySpan<byte> bytes, ReadOnlySpan<byte> magic, uint newest, int smallest, string source, out uint version)
    {
        if (bytes.Length < smallest)
            throw new SparseModelFormatException(source, $"it is {bytes.Length} bytes long, shorter than the smallest model file ({smallest} bytes); it is truncated or not a model file");
        if (!bytes[..8].SequenceEqual(magic))
            throw new SparseModelFormatException(source, $"it does not start with \"{Encoding.ASCII.GetString(magic)}\"", 0);
        uint found = BinaryPrimitives.ReadUInt32LittleEndian(bytes[8..]);
        if (found < 1 || found > newest)
            throw new SparseModelFormatException(source, $"its format version is {found}; this library reads versions 1 to {newest}", 8);
        version = found;
        ReadOnlySpan<byte> payload = bytes[..^4];
        uint stored = BinaryPrimitives.ReadUInt32LittleEndian(bytes[^4..]);
        uint actual = Crc32.Compute(payload);
        if (stored != actual)
            throw new SparseModelFormatException(source, $"its checksum does not match (stored 0x{stored:X8}, computed 0x{actual:X8}); the file is corrupted or truncated");
        return payload;
    }
}
