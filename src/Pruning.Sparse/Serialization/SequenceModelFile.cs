using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Sequences;

namespace Pruning.Sparse.Serialization;

/// <summary>
/// The sequence-model file (<c>.psq</c>): the same framing and discipline as <see cref="SparseModelFile"/>
/// (little-endian, versioned, CRC-32 over everything before it, every count checked against the bytes left before
/// anything is allocated, the working memory of one step checked against <see cref="SparseModelOptions.MaxBufferBytes"/>).
/// <code>
/// "PRNSPSEQ"  u32 version(1)  embedding-matrix  u32 layer count  layer*  decoder-matrix  decoder-bias  u32 crc32
/// layer:   u8 kind (1 LSTM, 2 GRU), weight_ih matrix, bias_ih, weight_hh matrix, bias_hh
/// </code>
/// Matrices and biases are stored as in <see cref="SparseModelFile"/> (dense, or CSR with uint16 or int32 columns and
/// float32, half or int8 values; the compressed values need version 2).
/// </summary>
internal static class SequenceModelFile
{
    /// <summary>The file's first 8 bytes.</summary>
    public static ReadOnlySpan<byte> Magic => "PRNSPSEQ"u8;

    /// <summary>
    /// The newest version this library reads and writes: 2 adds compressed CSR values. A model without them is written
    /// as version 1, which older readers accept.
    /// </summary>
    public static uint Version => 2;

    private enum LayerTag : byte { Lstm = 1, Gru = 2 }

    /// <summary>Writes <paramref name="model"/> to <paramref name="path"/> atomically.</summary>
    public static void Save(SequenceModel model, string path) => FileFrame.Save(ToBytes(model), path);

    /// <summary>The file's bytes for <paramref name="model"/>.</summary>
    public static byte[] ToBytes(SequenceModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        WeightMatrix[] matrices = [model.Embedding.Table, .. model.Layers.SelectMany(l => new[] { l.WeightIh, l.WeightHh }), model.Decoder.Weight];
        return FileFrame.Checksummed(Magic, SparseModelFile.VersionFor(matrices), w =>
        {
            SparseModelFile.WriteMatrix(w, model.Embedding.Table);
            w.Write((uint)model.Layers.Count);
            foreach (RecurrentLayer layer in model.Layers)
            {
                w.Write((byte)(layer is LstmLayer ? LayerTag.Lstm : LayerTag.Gru));
                SparseModelFile.WriteMatrix(w, layer.WeightIh);
                SparseModelFile.WriteBias(w, layer.BiasIh);
                SparseModelFile.WriteMatrix(w, layer.WeightHh);
                SparseModelFile.WriteBias(w, layer.BiasHh);
            }
            SparseModelFile.WriteMatrix(w, model.Decoder.Weight);
            SparseModelFile.WriteBias(w, model.Decoder.Bias);
        });
    }

    /// <summary>Loads the model in <paramref name="path"/>.</summary>
    /// <exception cref="FileNotFoundException">There is no such file.</exception>
    /// <exception cref="SparseModelFormatException">The file is not a valid sequence model, or it needs more working memory than allowed.</exception>
    public static SequenceModel Load(string path, SparseModelOptions? options = null) => Read(FileFrame.ReadFile(path, SparseModelFile.MaxFileBytes), path, options);

    /// <summary>Reads a model from its file bytes; <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="SparseModelFormatException">The bytes are not a valid sequence model, or it needs more working memory than allowed.</exception>
    public static SequenceModel Read(ReadOnlySpan<byte> bytes, string source = "bytes", SparseModelOptions? options = null)
    {
        ReadOnlySpan<byte> payload = FileFrame.Payload(bytes, Magic, Version, FileFrame.HeaderBytes + 9 + 4 + 9 + 1 + 4, source, out uint version);
        var r = new SparseModelFile.Reader(payload, source) { Position = FileFrame.HeaderBytes, Version = version };
        var embedding = new EmbeddingLayer(SparseModelFile.ReadMatrix(ref r, "the embedding"));
        uint count = r.UInt32("layer count");
        if (count == 0 || count > (uint)(payload.Length - r.Position))
            throw r.Error($"the layer count {count} is impossible for the bytes that follow", r.Position - 4);
        var layers = new List<RecurrentLayer>((int)count);
        for (int i = 0; i < count; i++)
        {
            long start = r.Position;
            byte tag = r.Byte($"layer {i} kind");
            if (tag is not ((byte)LayerTag.Lstm or (byte)LayerTag.Gru)) throw r.Error($"layer {i} has unknown kind {tag}", start);
            WeightMatrix ih = SparseModelFile.ReadMatrix(ref r, $"layer {i} weight_ih");
            float[]? biasIh = SparseModelFile.ReadBias(ref r, $"layer {i} bias_ih", ih.Rows);
            WeightMatrix hh = SparseModelFile.ReadMatrix(ref r, $"layer {i} weight_hh");
            float[]? biasHh = SparseModelFile.ReadBias(ref r, $"layer {i} bias_hh", hh.Rows);
            try
            {
                layers.Add(tag == (byte)LayerTag.Lstm ? new LstmLayer(ih, hh, biasIh, biasHh) : new GruLayer(ih, hh, biasIh, biasHh));
            }
            catch (ArgumentException e)
            {
                throw r.Error($"layer {i} is invalid: {SparseModelFile.Bare(e)}", start, e);
            }
        }
        WeightMatrix decoderWeight = SparseModelFile.ReadMatrix(ref r, "the decoder");
        var decoder = new LinearLayer(decoderWeight, SparseModelFile.ReadBias(ref r, "the decoder", decoderWeight.Rows));
        if (r.Position != payload.Length)
            throw r.Error($"{payload.Length - r.Position} unexpected bytes follow the decoder", r.Position);
        try
        {
            return new SequenceModel(embedding, layers, decoder, options);
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
}
