using System.Buffers.Binary;
using Pruning.Sparse;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Sequences;
using Pruning.Sparse.Serialization;

namespace Pruning.Tool;

/// <summary>A model file of either kind, read through the library's bounded readers.</summary>
internal sealed record ModelFile(string Path, string Kind, uint Version, long Bytes, SparseModel? Sparse, SequenceModel? Sequence)
{
    /// <summary>Reads <paramref name="path"/>, telling the kind from its first bytes.</summary>
    /// <exception cref="FileNotFoundException">There is no such file.</exception>
    /// <exception cref="InvalidDataException">It is not a model file of this library, or it is damaged; the message says which.</exception>
    public static ModelFile Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"'{path}' does not exist.", path);
        var header = new byte[12];
        int read;
        using (FileStream stream = File.OpenRead(path)) read = stream.ReadAtLeast(header, header.Length, throwOnEndOfStream: false);
        long bytes = new FileInfo(path).Length;
        uint version = read >= 12 ? BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(8)) : 0;
        ReadOnlySpan<byte> magic = header.AsSpan(0, Math.Min(read, 8));
        if (magic.SequenceEqual(SparseModelFile.Magic))
            return new ModelFile(path, "sparse model", version, bytes, SparseModel.Load(path), null);
        if (magic.SequenceEqual(SequenceModelFile.Magic))
            return new ModelFile(path, "sequence model", version, bytes, null, SequenceModel.Load(path));
        throw new InvalidDataException(
            $"'{path}' is not a model file of Pruning.Sparse: a .psm file starts with {System.Text.Encoding.ASCII.GetString(SparseModelFile.Magic)}, a .psq file with {System.Text.Encoding.ASCII.GetString(SequenceModelFile.Magic)}.");
    }

    /// <summary>Non-zero weights of a layer, inside its branches too.</summary>
    public static long NonZeros(SparseLayer layer) => LayerChains.All([layer]).Sum(l => l switch
    {
        LinearLayer linear => linear.Weight.NonZeros,
        Conv2dLayer conv => conv.Weight.NonZeros,
        _ => 0,
    });
}
