using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Sequences;

namespace Pruning.Sparse.Serialization;

/// <summary>
/// The transformer file (<c>.ptf</c>): the framing and discipline of <see cref="SparseModelFile"/> (little-endian,
/// versioned, CRC-32 over everything before it, every count checked against the bytes left before anything is
/// allocated, one token with a full cache checked against <see cref="SparseModelOptions.MaxBufferBytes"/>).
/// <code>
/// "PRNSPTFM"  u32 version(1)  u32 heads  token-matrix  position-matrix  u32 block count  block*
///             u8 final-norm flag  [norm]  u8 tied  [decoder-matrix]  decoder-bias  u32 crc32
/// block:  u8 flags (1 pre-LN, 2 tanh GELU)  norm  qkv-matrix  qkv-bias  out-matrix  out-bias  norm  up-matrix  up-bias  down-matrix  down-bias
/// norm:   f32 epsilon  f32[d] weight  f32[d] bias
/// </code>
/// Matrices and biases are stored as in <see cref="SparseModelFile"/> version 2 (every format and value type).
/// </summary>
internal static class TransformerModelFile
{
    private const byte NormFirst = 1, TanhGelu = 2;

    /// <summary>The file's first 8 bytes.</summary>
    public static ReadOnlySpan<byte> Magic => "PRNSPTFM"u8;

    /// <summary>The newest version this library reads and writes.</summary>
    public static uint Version => 1;

    /// <summary>Writes <paramref name="model"/> to <paramref name="path"/> atomically.</summary>
    public static void Save(TransformerModel model, string path) => FileFrame.Save(ToBytes(model), path);

    /// <summary>The file's bytes for <paramref name="model"/>.</summary>
    public static byte[] ToBytes(TransformerModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return FileFrame.Checksummed(Magic, Version, w =>
        {
            w.Write((uint)model.Heads);
            SparseModelFile.WriteMatrix(w, model.Tokens.Table);
            SparseModelFile.WriteMatrix(w, model.Positions.Table);
            w.Write((uint)model.Blocks.Count);
            foreach (TransformerBlock block in model.Blocks)
            {
                w.Write((byte)((block.NormFirst ? NormFirst : 0) | (block.Gelu == GeluApproximation.Tanh ? TanhGelu : 0)));
                WriteNorm(w, block.AttentionNorm);
                WriteLinear(w, block.QueryKeyValue);
                WriteLinear(w, block.AttentionOutput);
                WriteNorm(w, block.MlpNorm);
                WriteLinear(w, block.MlpUp);
                WriteLinear(w, block.MlpDown);
            }
            w.Write(model.FinalNorm is null ? (byte)0 : (byte)1);
            if (model.FinalNorm is not null) WriteNorm(w, model.FinalNorm);
            w.Write(model.Tied ? (byte)1 : (byte)0);
            if (!model.Tied) SparseModelFile.WriteMatrix(w, model.Decoder.Weight);
            SparseModelFile.WriteBias(w, model.Decoder.Bias);
        });
    }

    private static void WriteNorm(BinaryWriter w, LayerNorm norm)
    {
        w.Write(norm.Epsilon);
        w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(norm.Weight));
        w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(norm.Bias));
    }

    private static void WriteLinear(BinaryWriter w, LinearLayer layer)
    {
        SparseModelFile.WriteMatrix(w, layer.Weight);
        SparseModelFile.WriteBias(w, layer.Bias);
    }

    /// <summary>Loads the model in <paramref name="path"/>.</summary>
    /// <exception cref="FileNotFoundException">There is no such file.</exception>
    /// <exception cref="SparseModelFormatException">The file is not a valid transformer, or it needs more memory than allowed.</exception>
    public static TransformerModel Load(string path, SparseModelOptions? options = null) => Read(FileFrame.ReadFile(path, SparseModelFile.MaxFileBytes), path, options);

    /// <summary>Reads a model from its file bytes; <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="SparseModelFormatException">The bytes are not a valid transformer, or it needs more memory than allowed.</exception>
    public static TransformerModel Read(ReadOnlySpan<byte> bytes, string source = "bytes", SparseModelOptions? options = null)
    {
        ReadOnlySpan<byte> payload = FileFrame.Payload(bytes, Magic, Version, FileFrame.HeaderBytes + 4 + 9 + 9 + 4 + 1 + 1 + 1 + 4, source, out _);
        // The matrices inside are those of the chain model's version 2: every format and value type.
        var r = new SparseModelFile.Reader(payload, source) { Position = FileFrame.HeaderBytes, Version = 2 };
        uint heads = r.UInt32("head count");
        if (heads == 0 || heads > int.MaxValue) throw r.Error($"the head count {heads} is impossible", r.Position - 4);
        WeightMatrix tokens = SparseModelFile.ReadMatrix(ref r, "the token embedding");
        WeightMatrix positions = SparseModelFile.ReadMatrix(ref r, "the position embedding");
        int d = tokens.Cols;
        uint count = r.UInt32("block count");
        if (count == 0 || count > (uint)(r.Remaining))
            throw r.Error($"the block count {count} is impossible for the bytes that follow", r.Position - 4);
        var blocks = new List<TransformerBlock>((int)count);
        for (int i = 0; i < count; i++)
        {
            long start = r.Position;
            byte flags = r.Byte($"block {i} flags");
            if (flags > (NormFirst | TanhGelu)) throw r.Error($"block {i} has unknown flags {flags}", start);
            LayerNorm attentionNorm = ReadNorm(ref r, d, $"block {i} attention norm");
            LinearLayer qkv = ReadLinear(ref r, $"block {i} qkv");
            LinearLayer output = ReadLinear(ref r, $"block {i} attention output");
            LayerNorm mlpNorm = ReadNorm(ref r, d, $"block {i} MLP norm");
            LinearLayer up = ReadLinear(ref r, $"block {i} MLP up");
            LinearLayer down = ReadLinear(ref r, $"block {i} MLP down");
            try
            {
                blocks.Add(new TransformerBlock(attentionNorm, qkv, output, (int)heads, mlpNorm, up, down,
                    (flags & TanhGelu) != 0 ? GeluApproximation.Tanh : GeluApproximation.None, (flags & NormFirst) != 0));
            }
            catch (ArgumentException e)
            {
                throw r.Error($"block {i} is invalid: {SparseModelFile.Bare(e)}", start, e);
            }
        }
        byte hasFinal = r.Byte("final norm flag");
        if (hasFinal > 1) throw r.Error($"the final norm flag is {hasFinal}, not 0 or 1", r.Position - 1);
        LayerNorm? finalNorm = hasFinal == 1 ? ReadNorm(ref r, d, "the final norm") : null;
        byte tied = r.Byte("tied flag");
        if (tied > 1) throw r.Error($"the tied flag is {tied}, not 0 or 1", r.Position - 1);
        WeightMatrix decoderWeight = tied == 1 ? tokens : SparseModelFile.ReadMatrix(ref r, "the decoder");
        float[]? decoderBias = SparseModelFile.ReadBias(ref r, "the decoder", decoderWeight.Rows);
        if (r.Position != payload.Length)
            throw r.Error($"{payload.Length - r.Position} unexpected bytes follow the decoder", r.Position);
        try
        {
            return new TransformerModel(new EmbeddingLayer(tokens), new EmbeddingLayer(positions), blocks, finalNorm, new LinearLayer(decoderWeight, decoderBias), options);
        }
        catch (ArgumentException e) when (e.ParamName == "options")
        {
            throw new SparseModelFormatException(source, $"the model it describes is too large to run: {SparseModelFile.Bare(e)}", null, e);
        }
        catch (ArgumentException e)
        {
            throw new SparseModelFormatException(source, $"its parts do not fit together: {SparseModelFile.Bare(e)}", null, e);
        }
    }

    private static LayerNorm ReadNorm(ref SparseModelFile.Reader r, int dimension, string what)
    {
        long start = r.Position;
        float epsilon = r.Single($"{what} epsilon");
        float[] weight = r.Singles(dimension, $"{what} weight"), bias = r.Singles(dimension, $"{what} bias");
        try
        {
            return new LayerNorm(dimension, weight, bias, epsilon);
        }
        catch (ArgumentException e)
        {
            throw r.Error($"{what} is invalid: {SparseModelFile.Bare(e)}", start, e);
        }
    }

    private static LinearLayer ReadLinear(ref SparseModelFile.Reader r, string what)
    {
        WeightMatrix weight = SparseModelFile.ReadMatrix(ref r, what);
        return new LinearLayer(weight, SparseModelFile.ReadBias(ref r, what, weight.Rows));
    }
}
