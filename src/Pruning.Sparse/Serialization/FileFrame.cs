using System.Buffers.Binary;
using System.Text;

namespace Pruning.Sparse.Serialization;

/// <summary>
/// What every file this library writes shares (models, sequence and transformer models, pruner and AMC checkpoints):
/// an 8-byte magic, a u32 version, the payload, and a CRC-32 of all before it, little-endian; written atomically,
/// read from untrusted bytes with the size and checksum checked first. Problems are reported through a
/// <see cref="FrameError"/>, so each kind of file throws its own exception naming the file.
/// </summary>
internal static class FileFrame
{
    /// <summary>Builds the exception for <paramref name="problem"/> (a clause: "it is truncated"), found at <paramref name="offset"/> when known.</summary>
    public delegate Exception FrameError(string problem, long? offset);

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
    public static void Save(byte[] bytes, string path) => Save(path, stream => stream.Write(bytes));

    /// <summary>
    /// Writes what <paramref name="write"/> puts into the stream to <paramref name="path"/> through a temporary file
    /// beside it and a rename: the one atomic write of the library. A crash or an exception in <paramref name="write"/>
    /// leaves the previous file (if any) as it was and no temporary file behind.
    /// </summary>
    public static void Save(string path, Action<Stream> write)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(write);
        string temporary = path + ".tmp-" + Environment.ProcessId;
        try
        {
            using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
                write(file);
            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
    }

    /// <summary>A model file's bytes, refusing files larger than <paramref name="maxBytes"/> before reading them.</summary>
    public static byte[] ReadFile(string path, long maxBytes) =>
        ReadFile(path, maxBytes, "Model file", (problem, offset) => new SparseModelFormatException(path, problem, offset));

    /// <summary>
    /// A file's bytes, refusing files larger than <paramref name="maxBytes"/> before reading them; <paramref name="kind"/>
    /// ("Model file", "Pruning checkpoint") starts the message of a missing file.
    /// </summary>
    public static byte[] ReadFile(string path, long maxBytes, string kind, FrameError error)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            if (file.Length > maxBytes) throw error($"it is {file.Length} bytes, more than the {maxBytes} such a file may have here", null);
            var bytes = new byte[file.Length];
            file.ReadExactly(bytes);
            return bytes;
        }
        catch (FileNotFoundException)
        {
            throw new FileNotFoundException($"{kind} '{path}' does not exist.", path);
        }
        catch (DirectoryNotFoundException)
        {
            throw new FileNotFoundException($"{kind} '{path}' does not exist.", path);
        }
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
    public static ReadOnlySpan<byte> Payload(ReadOnlySpan<byte> bytes, ReadOnlySpan<byte> magic, uint newest, int smallest, string source, out uint version) =>
        Payload(bytes, magic, 1, newest, smallest, (problem, offset) => new SparseModelFormatException(source, problem, offset), out version);

    /// <summary>As above for any kind of file: versions <paramref name="oldest"/> to <paramref name="newest"/>, problems through <paramref name="error"/>.</summary>
    public static ReadOnlySpan<byte> Payload(ReadOnlySpan<byte> bytes, ReadOnlySpan<byte> magic, uint oldest, uint newest, int smallest, FrameError error, out uint version)
    {
        if (magic.Length != 8) throw new ArgumentException("A file's magic is 8 bytes.", nameof(magic));
        if (bytes.Length < Math.Max(smallest, HeaderBytes + 4))
            throw error($"it is {bytes.Length} bytes long, shorter than the smallest valid file ({Math.Max(smallest, HeaderBytes + 4)} bytes); it is truncated or of another kind", null);
        if (!bytes[..8].SequenceEqual(magic))
            throw error($"it does not start with \"{Encoding.ASCII.GetString(magic)}\"", 0);
        uint found = BinaryPrimitives.ReadUInt32LittleEndian(bytes[8..]);
        if (found < oldest || found > newest)
            throw error($"its format version is {found}; this library reads {(oldest == newest ? $"version {newest}" : $"versions {oldest} to {newest}")}", 8);
        version = found;
        ReadOnlySpan<byte> payload = bytes[..^4];
        uint stored = BinaryPrimitives.ReadUInt32LittleEndian(bytes[^4..]);
        uint actual = Crc32.Compute(payload);
        if (stored != actual)
            throw error($"its checksum does not match (stored 0x{stored:X8}, computed 0x{actual:X8}); the file is corrupted or truncated", null);
        return payload;
    }
}
