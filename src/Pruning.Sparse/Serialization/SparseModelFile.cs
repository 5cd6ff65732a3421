using System.Buffers.Binary;
using System.Text;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;

namespace Pruning.Sparse.Serialization;

/// <summary>
/// The model file: little-endian, versioned, with a CRC-32 over everything before it.
/// <code>
/// "PRNSPMDL"  u32 version (1, or 2 when a matrix has compressed values)  i32 C, H, W (input)  u32 layer count  layer*  u32 crc32
/// layer:   u8 kind, then
///   1 Linear     matrix, bias
///   2 Conv2d     i32 in-channels, kh, kw, sh, sw, ph, pw, dh, dw, matrix, bias
///   3 Activation u8 kind (1 ReLU, 2 LeakyReLU, 3 Tanh, 4 Sigmoid; 5 ReLU6, 6 Hardswish, 7 Hardsigmoid in version 2), f32 slope
///   4 Pool2d     u8 kind, i32 kh, kw, sh, sw, ph, pw, u8 flags (bit 0 count-include-pad; bit 1 ceil mode, version 2)
///   5 Flatten
///   6 GlobalAvgPool2d
///   7 grouped Conv2d (version 2): i32 groups, then as Conv2d (the matrix is [out, in/groups·kh·kw])
///   8 Residual (version 2): u32 main count, layer*, u32 shortcut count (0 = identity), layer*; nested at most 8 deep
///   9 Concat (version 2): u32 branch count (2…64), then per branch u32 count (0 = identity), layer*; nests with 8
///  10 Scale (version 2): u32 count (≥ 1), layer*: the branch computing one factor per channel; nests with 8 and 9
/// matrix:  u8 format, i32 rows, cols, then
///          1 dense: rows·cols f32
///          2 CSR uint16 / 3 CSR int32: i32 nnz, (rows+1) i32 row pointers, nnz u16|i32 columns, nnz f32 values
///          4 / 5 (version 2): the same with nnz u16 half values (finite)
///          6 / 7 (version 2): the same with rows f32 row scales (finite, ≥ 0), then nnz i8 values (−127…127)
///          8 BSR uint16 / 9 BSR int32 (version 2): u8 R, u8 C, i32 blocks, (rows/R+1) i32 block row pointers,
///                      blocks u16|i32 block columns, blocks·R·C f32 values
///          10 N:M (version 2): u8 N, u8 M, rows·cols/M position words (u8 for 2:4, u16 for 4:8), rows·cols/M·N f32 values
/// bias:    u8 present, then rows f32
/// </code>
/// The reader treats the file as untrusted: the checksum is verified before parsing, every count is checked against
/// the bytes left before anything is allocated, every layer's geometry is checked (extents, padding the kernel can
/// reach), and the model's working memory at batch 1 must fit <see cref="SparseModelOptions.MaxBufferBytes"/>
/// before the model is returned; any problem is a <see cref="SparseModelFormatException"/> naming the file. Reading
/// allocates at most a few times the file's size.
/// </summary>
internal static class SparseModelFile
{
    /// <summary>The file's first 8 bytes.</summary>
    public static ReadOnlySpan<byte> Magic => "PRNSPMDL"u8;

    /// <summary>
    /// The newest version this library reads and writes: 2 adds compressed CSR values (<see cref="MatrixFormat.CsrFloat16"/>,
    /// <see cref="MatrixFormat.CsrInt8"/>), block-sparse (<see cref="BsrMatrix"/>) and N:M (<see cref="NmMatrix"/>) matrices. A model without them is
    /// written as version 1, which older readers accept.
    /// </summary>
    public static uint Version => 2;

    /// <summary>The oldest version that holds these matrices.</summary>
    internal static uint VersionFor(IEnumerable<WeightMatrix> matrices) =>
        matrices.Any(m => m.Format is not (MatrixFormat.Csr or MatrixFormat.Dense)) ? 2u : 1u;

    /// <summary>Largest file the loader accepts (2 GiB − 1).</summary>
    public static long MaxFileBytes => int.MaxValue;

    private enum LayerTag : byte { Linear = 1, Conv2d = 2, Activation = 3, Pool2d = 4, Flatten = 5, GlobalAveragePool = 6, GroupedConv2d = 7, Residual = 8, Concat = 9, Scale = 10 }

    private enum MatrixTag : byte { Dense = 1, Csr16 = 2, Csr32 = 3, Csr16Half = 4, Csr32Half = 5, Csr16Int8 = 6, Csr32Int8 = 7, Bsr16 = 8, Bsr32 = 9, NOfM = 10 }

    /// <summary>Writes <paramref name="model"/> to <paramref name="path"/> atomically (a temporary file, then a rename), so a crash never leaves half a file.</summary>
    public static void Save(SparseModel model, string path) => FileFrame.Save(ToBytes(model), path);

    /// <summary>Writes <paramref name="model"/> to <paramref name="stream"/>.</summary>
    public static void Write(SparseModel model, Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        stream.Write(ToBytes(model));
    }

    /// <summary>The file's bytes for <paramref name="model"/>.</summary>
    public static byte[] ToBytes(SparseModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        SparseLayer[] all = [.. LayerChains.All(model.Layers)];
        var matrices = all.Select(l => l switch { LinearLayer linear => linear.Weight, Conv2dLayer conv => conv.Weight, _ => null }).OfType<WeightMatrix>();
        uint version = Math.Max(VersionFor(matrices),
            all.Any(l => l is Conv2dLayer { Groups: > 1 } or Pool2dLayer { CeilMode: true } or ActivationLayer { Kind: ActivationKind.ReLU6 or ActivationKind.Hardswish or ActivationKind.Hardsigmoid } or ResidualLayer or ConcatLayer or ScaleLayer) ? 2u : 1u);
        return FileFrame.Checksummed(Magic, version, w =>
        {
            w.Write(model.InputShape.Channels);
            w.Write(model.InputShape.Height);
            w.Write(model.InputShape.Width);
            w.Write((uint)model.Layers.Count);
            foreach (SparseLayer layer in model.Layers) WriteLayer(w, layer);
        });
    }

    /// <summary>A branch: u32 count, then its layers.</summary>
    private static void WriteChain(BinaryWriter w, IReadOnlyList<SparseLayer> chain)
    {
        w.Write((uint)chain.Count);
        foreach (SparseLayer inner in chain) WriteLayer(w, inner);
    }

    private static void WriteLayer(BinaryWriter w, SparseLayer layer)
    {
        switch (layer)
        {
            case ResidualLayer residual:
                w.Write((byte)LayerTag.Residual);
                WriteChain(w, residual.Main);
                WriteChain(w, residual.Shortcut);
                break;
            case ConcatLayer concat:
                w.Write((byte)LayerTag.Concat);
                w.Write((uint)concat.Branches.Count);
                foreach (IReadOnlyList<SparseLayer> chain in concat.Branches) WriteChain(w, chain);
                break;
            case ScaleLayer scale:
                w.Write((byte)LayerTag.Scale);
                WriteChain(w, scale.Factors);
                break;
            case LinearLayer linear:
                w.Write((byte)LayerTag.Linear);
                WriteMatrix(w, linear.Weight);
                WriteBias(w, linear.Bias);
                break;
            case Conv2dLayer conv:
                w.Write((byte)(conv.Groups > 1 ? LayerTag.GroupedConv2d : LayerTag.Conv2d));
                if (conv.Groups > 1) w.Write(conv.Groups);
                foreach (int v in new[] { conv.InChannels, conv.Kernel.H, conv.Kernel.W, conv.Stride.H, conv.Stride.W, conv.Padding.H, conv.Padding.W, conv.Dilation.H, conv.Dilation.W })
                    w.Write(v);
                WriteMatrix(w, conv.Weight);
                WriteBias(w, conv.Bias);
                break;
            case ActivationLayer activation:
                w.Write((byte)LayerTag.Activation);
                w.Write((byte)activation.Kind);
                w.Write(activation.Slope);
                break;
            case Pool2dLayer pool:
                w.Write((byte)LayerTag.Pool2d);
                w.Write((byte)pool.Kind);
                foreach (int v in new[] { pool.Kernel.H, pool.Kernel.W, pool.Stride.H, pool.Stride.W, pool.Padding.H, pool.Padding.W })
                    w.Write(v);
                w.Write((byte)((pool.CountIncludePad ? 1 : 0) | (pool.CeilMode ? 2 : 0)));
                break;
            case FlattenLayer:
                w.Write((byte)LayerTag.Flatten);
                break;
            case GlobalAveragePoolLayer:
                w.Write((byte)LayerTag.GlobalAveragePool);
                break;
            default:
                throw new NotSupportedException($"The model file cannot hold a {layer.GetType().Name}.");
        }
    }

    internal static void WriteMatrix(BinaryWriter w, WeightMatrix matrix)
    {
        switch (matrix)
        {
            case DenseMatrix dense:
                w.Write((byte)MatrixTag.Dense);
                w.Write(dense.Rows);
                w.Write(dense.Cols);
                w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(dense.Values));
                break;
            case CsrMatrix csr:
            {
                CsrMatrix.StoredValues stored = csr.Stored;
                MatrixTag tag = csr.Format switch
                {
                    MatrixFormat.CsrFloat16 => csr.HasNarrowIndices ? MatrixTag.Csr16Half : MatrixTag.Csr32Half,
                    MatrixFormat.CsrInt8 => csr.HasNarrowIndices ? MatrixTag.Csr16Int8 : MatrixTag.Csr32Int8,
                    _ => csr.HasNarrowIndices ? MatrixTag.Csr16 : MatrixTag.Csr32,
                };
                w.Write((byte)tag);
                w.Write(csr.Rows);
                w.Write(csr.Cols);
                w.Write(stored.Count);
                w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(csr.RowPointers));
                if (csr.HasNarrowIndices) w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(csr.ColumnIndices16));
                else w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(csr.ColumnIndices32));
                if (stored.Float32 is { } f32) w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(f32.AsSpan()));
                else if (stored.Float16 is { } f16) w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(f16.AsSpan()));
                else
                {
                    w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(stored.Scales.AsSpan()));
                    w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(stored.Int8.AsSpan()));
                }
                break;
            }
            case BsrMatrix bsr:
            {
                bool narrow = bsr.Cols / bsr.Block.C <= CsrMatrix.MaxColumnsForUInt16;
                w.Write((byte)(narrow ? MatrixTag.Bsr16 : MatrixTag.Bsr32));
                w.Write(bsr.Rows);
                w.Write(bsr.Cols);
                w.Write((byte)bsr.Block.R);
                w.Write((byte)bsr.Block.C);
                w.Write(bsr.Blocks);
                w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(bsr.BlockRowPointers));
                for (int j = 0; j < bsr.Blocks; j++)
                    if (narrow) w.Write((ushort)bsr.BlockColumnAt(j)); else w.Write(bsr.BlockColumnAt(j));
                w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(bsr.Values));
                break;
            }
            case NmMatrix nm:
                w.Write((byte)MatrixTag.NOfM);
                w.Write(nm.Rows);
                w.Write(nm.Cols);
                w.Write((byte)nm.N);
                w.Write((byte)nm.M);
                w.Write(nm.Positions);
                w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(nm.Values));
                break;
            default:
                throw new NotSupportedException($"The model file cannot hold a {matrix.GetType().Name}.");
        }
    }

    internal static void WriteBias(BinaryWriter w, ReadOnlySpan<float> bias)
    {
        w.Write(bias.IsEmpty ? (byte)0 : (byte)1);
        if (!bias.IsEmpty) w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(bias));
    }

    /// <summary>Loads the model in <paramref name="path"/>; a file that is not a valid model gives a <see cref="SparseModelFormatException"/> naming it.</summary>
    /// <param name="path">The file.</param>
    /// <param name="options">Limits for the loaded model (the default budget when null).</param>
    /// <exception cref="FileNotFoundException">There is no such file.</exception>
    /// <exception cref="SparseModelFormatException">The file is not a valid model, or the model needs more working memory than allowed.</exception>
    public static SparseModel Load(string path, SparseModelOptions? options = null) => Read(FileFrame.ReadFile(path, MaxFileBytes), path, options);

    /// <summary>Reads a model from <paramref name="stream"/> (at most <see cref="MaxFileBytes"/> bytes); <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="SparseModelFormatException">The bytes are not a valid model, or the model needs more working memory than allowed.</exception>
    public static SparseModel Read(Stream stream, string source = "stream", SparseModelOptions? options = null) =>
        Read(FileFrame.ReadStream(stream, source, MaxFileBytes), source, options);

    /// <summary>Reads a model from its file bytes; <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="SparseModelFormatException">The bytes are not a valid model, or the model needs more working memory than allowed.</exception>
    public static SparseModel Read(ReadOnlySpan<byte> bytes, string source = "bytes", SparseModelOptions? options = null)
    {
        ReadOnlySpan<byte> payload = FileFrame.Payload(bytes, Magic, Version, FileFrame.HeaderBytes + 12 + 4 + 4, source, out uint version);
        var r = new Reader(payload, source) { Position = FileFrame.HeaderBytes, Version = version };
        FeatureShape input = r.Shape("input shape");
        uint count = r.UInt32("layer count");
        if (count == 0 || count > (uint)(payload.Length - r.Position))
            throw r.Error($"the layer count {count} is impossible for the bytes that follow", r.Position - 4);
        var layers = new List<SparseLayer>((int)count);
        for (int i = 0; i < count; i++) layers.Add(ReadLayer(ref r, i));
        if (r.Position != payload.Length)
            throw r.Error($"{payload.Length - r.Position} unexpected bytes follow the last layer", r.Position);
        try
        {
            return new SparseModel(input, layers, options);
        }
        catch (ArgumentException e) when (e.ParamName == "options")
        {
            throw new SparseModelFormatException(source, $"the model it describes is too large to run: {Bare(e)}", null, e);
        }
        catch (ArgumentException e)
        {
            throw new SparseModelFormatException(source, $"its layers do not fit together: {Bare(e)}", null, e);
        }
    }

    /// <summary>Branching layers are version 2 and nest at most <see cref="ResidualLayer.MaxDepth"/> deep.</summary>
    private static void CheckBranching(ref Reader r, int index, int depth, long start, string what)
    {
        if (r.Version < 2) throw r.Error($"layer {index} is {what}, which a version-{r.Version} file cannot hold", start);
        if (depth >= ResidualLayer.MaxDepth) throw r.Error($"layer {index} nests residual blocks and concatenations more than {ResidualLayer.MaxDepth} deep", start);
    }

    /// <summary>A branch: its layer count, bounded by the bytes that follow before anything is allocated, then the layers.</summary>
    private static List<SparseLayer> ReadChain(ref Reader r, int index, int depth, string what)
    {
        uint count = r.UInt32($"layer {index} {what} length");
        if (count > (uint)r.Remaining)
            throw r.Error($"layer {index}'s {what} claims {count} layers, more than the bytes that follow", r.Position - 4);
        var chain = new List<SparseLayer>((int)count);
        for (int i = 0; i < count; i++) chain.Add(ReadLayer(ref r, i, depth + 1));
        return chain;
    }

    private static SparseLayer ReadLayer(ref Reader r, int index, int depth = 0)
    {
        long start = r.Position;
        byte tag = r.Byte($"layer {index} kind");
        try
        {
            switch ((LayerTag)tag)
            {
                case LayerTag.Residual:
                    {
                        CheckBranching(ref r, index, depth, start, "a residual block");
                        List<SparseLayer> main = ReadChain(ref r, index, depth, "main branch"), shortcut = ReadChain(ref r, index, depth, "shortcut branch");
                        return new ResidualLayer(main, shortcut);
                    }
                case LayerTag.Concat:
                    {
                        CheckBranching(ref r, index, depth, start, "a concatenation");
                        uint branches = r.UInt32($"layer {index} branch count");
                        if (branches is < 2 or > ConcatLayer.MaxBranches)
                            throw r.Error($"layer {index} is a concatenation of {branches} branches; 2 to {ConcatLayer.MaxBranches} are allowed", r.Position - 4);
                        var chains = new List<SparseLayer>[branches];
                        for (int c = 0; c < branches; c++) chains[c] = ReadChain(ref r, index, depth, $"branch {c}");
                        return new ConcatLayer(chains);
                    }
                case LayerTag.Scale:
                    {
                        CheckBranching(ref r, index, depth, start, "a per-channel scaling");
                        long at = r.Position;
                        List<SparseLayer> factors = ReadChain(ref r, index, depth, "factors branch");
                        if (factors.Count == 0) throw r.Error($"layer {index}'s factors branch is empty; it needs at least one layer", at);
                        return new ScaleLayer(factors);
                    }
                case LayerTag.Linear:
                    {
                        WeightMatrix weight = ReadMatrix(ref r, $"layer {index}");
                        return new LinearLayer(weight, ReadBias(ref r, $"layer {index}", weight.Rows));
                    }
                case LayerTag.Conv2d:
                case LayerTag.GroupedConv2d:
                    {
                        int groups = 1;
                        if ((LayerTag)tag == LayerTag.GroupedConv2d)
                        {
                            if (r.Version < 2) throw r.Error($"layer {index} is a grouped convolution, which a version-{r.Version} file cannot hold", start);
                            groups = r.Int32($"layer {index} groups");
                            if (groups < 2 || groups > 1 << 16) throw r.Error($"layer {index} has {groups} groups; a grouped convolution has 2 to 65,536", r.Position - 4);
                        }
                        Span<int> p = stackalloc int[9];
                        for (int k = 0; k < p.Length; k++) p[k] = r.Int32($"layer {index} convolution parameter");
                        WeightMatrix weight = ReadMatrix(ref r, $"layer {index}");
                        float[]? bias = ReadBias(ref r, $"layer {index}", weight.Rows);
                        return new Conv2dLayer(weight, bias, p[0], (p[1], p[2]), (p[3], p[4]), (p[5], p[6]), (p[7], p[8]), groups: groups);
                    }
                case LayerTag.Activation:
                    {
                        byte kind = r.Byte($"layer {index} activation kind");
                        if ((ActivationKind)kind is ActivationKind.ReLU6 or ActivationKind.Hardswish or ActivationKind.Hardsigmoid && r.Version < 2)
                            throw r.Error($"layer {index} is a {(ActivationKind)kind}, which a version-{r.Version} file cannot hold", start);
                        return new ActivationLayer((ActivationKind)kind, r.Single($"layer {index} slope"));
                    }
                case LayerTag.Pool2d:
                    {
                        byte kind = r.Byte($"layer {index} pooling kind");
                        Span<int> p = stackalloc int[6];
                        for (int k = 0; k < p.Length; k++) p[k] = r.Int32($"layer {index} pooling parameter");
                        byte flags = r.Byte($"layer {index} pooling flags");
                        if (flags > (r.Version >= 2 ? 3 : 1)) throw r.Error($"layer {index}'s pooling flags are {flags}, which a version-{r.Version} file cannot hold", r.Position - 1);
                        return new Pool2dLayer((PoolKind)kind, (p[0], p[1]), (p[2], p[3]), (p[4], p[5]), (flags & 1) != 0, (flags & 2) != 0);
                    }
                case LayerTag.Flatten:
                    return new FlattenLayer();
                case LayerTag.GlobalAveragePool:
                    return new GlobalAveragePoolLayer();
                default:
                    throw r.Error($"layer {index} has unknown kind {tag}", start);
            }
        }
        catch (ArgumentException e)
        {
            throw r.Error($"layer {index} is invalid: {Bare(e)}", start, e);
        }
    }

    /// <summary>The message without the "(Parameter 'x')" .NET appends: the argument was ours, not the caller's.</summary>
    internal static string Bare(ArgumentException e) =>
        e.ParamName is null ? e.Message : e.Message.Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal);

    internal static WeightMatrix ReadMatrix(ref Reader r, string what)
    {
        long start = r.Position;
        byte tag = r.Byte($"{what} matrix format");
        int rows = r.Int32($"{what} rows"), cols = r.Int32($"{what} columns");
        if (rows < 1 || cols < 1) throw r.Error($"{what}'s matrix is {rows}×{cols}; both must be positive", start + 1);
        switch ((MatrixTag)tag)
        {
            case MatrixTag.Dense:
                return DenseMatrix.Owning(r.Singles((long)rows * cols, $"{what} dense weights"), rows, cols);
            case MatrixTag.Csr16 or MatrixTag.Csr32 or MatrixTag.Csr16Half or MatrixTag.Csr32Half or MatrixTag.Csr16Int8 or MatrixTag.Csr32Int8:
                {
                    var kind = (MatrixTag)tag;
                    if (kind > MatrixTag.Csr32 && r.Version < 2)
                        throw r.Error($"{what} has compressed values (format {tag}), which a version-{r.Version} file cannot hold", start);
                    bool narrow = kind is MatrixTag.Csr16 or MatrixTag.Csr16Half or MatrixTag.Csr16Int8;
                    if (narrow && cols > CsrMatrix.MaxColumnsForUInt16)
                        throw r.Error($"{what} stores uint16 column indices for {cols} columns", start);
                    int nonZeros = r.Int32($"{what} non-zero count");
                    if (nonZeros < 0 || nonZeros > (long)rows * cols)
                        throw r.Error($"{what} claims {nonZeros} non-zeros in a {rows}×{cols} matrix", r.Position - 4);
                    int[] rowPointers = r.Int32s((long)rows + 1, $"{what} row pointers");
                    ushort[]? columns16 = narrow ? r.UInt16s(nonZeros, $"{what} column indices") : null;
                    int[]? columns32 = narrow ? null : r.Int32s(nonZeros, $"{what} column indices");
                    CsrMatrix.StoredValues values = kind switch
                    {
                        MatrixTag.Csr16Half or MatrixTag.Csr32Half => new(null, r.UInt16s(nonZeros, $"{what} half values"), null, null),
                        MatrixTag.Csr16Int8 or MatrixTag.Csr32Int8 => Int8(ref r, rows, nonZeros, what),
                        _ => new(r.Singles(nonZeros, $"{what} values"), null, null, null),
                    };
                    try
                    {
                        return narrow ? CsrMatrix.Owning(rows, cols, rowPointers, columns16!, values) : CsrMatrix.Owning(rows, cols, rowPointers, columns32!, values);
                    }
                    catch (ArgumentException e)
                    {
                        throw r.Error($"{what}'s sparse matrix is inconsistent: {Bare(e)}", start, e);
                    }
                }
            case MatrixTag.Bsr16 or MatrixTag.Bsr32:
                {
                    if (r.Version < 2) throw r.Error($"{what} is block-sparse (format {tag}), which a version-{r.Version} file cannot hold", start);
                    int blockRowsIn = r.Byte($"{what} block rows"), blockColsIn = r.Byte($"{what} block columns");
                    if (!BsrMatrix.Shapes.Contains((blockRowsIn, blockColsIn)) || !BsrMatrix.Fits(rows, cols, (blockRowsIn, blockColsIn)))
                        throw r.Error($"{what} has {blockRowsIn}×{blockColsIn} blocks, which are not a supported shape or do not tile its {rows}×{cols} matrix", start);
                    int blocks = r.Int32($"{what} block count");
                    long most = (long)(rows / blockRowsIn) * (cols / blockColsIn);
                    if (blocks < 0 || blocks > most) throw r.Error($"{what} claims {blocks} blocks where at most {most} fit", r.Position - 4);
                    int[] pointers = r.Int32s(rows / blockRowsIn + 1L, $"{what} block row pointers");
                    int[] columns;
                    if ((MatrixTag)tag == MatrixTag.Bsr16)
                    {
                        if (cols / blockColsIn > CsrMatrix.MaxColumnsForUInt16) throw r.Error($"{what} stores uint16 block columns for {cols / blockColsIn} block columns", start);
                        columns = Array.ConvertAll(r.UInt16s(blocks, $"{what} block columns"), c => (int)c);
                    }
                    else columns = r.Int32s(blocks, $"{what} block columns");
                    float[] values = r.Singles((long)blocks * blockRowsIn * blockColsIn, $"{what} block values");
                    try
                    {
                        return BsrMatrix.Owning(rows, cols, (blockRowsIn, blockColsIn), pointers, columns, values);
                    }
                    catch (ArgumentException e)
                    {
                        throw r.Error($"{what}'s block-sparse matrix is inconsistent: {Bare(e)}", start, e);
                    }
                }
            case MatrixTag.NOfM:
                {
                    if (r.Version < 2) throw r.Error($"{what} is N:M sparse (format {tag}), which a version-{r.Version} file cannot hold", start);
                    int n = r.Byte($"{what} N"), m = r.Byte($"{what} M");
                    if (!NmMatrix.Patterns.Contains((n, m)) || cols % m != 0)
                        throw r.Error($"{what} is {n}:{m} sparse, which is not a supported pattern or does not tile its {cols} columns", start);
                    long groups = (long)rows * (cols / m);
                    byte[] positions = r.Bytes(groups * NmMatrix.WordBytes(m), $"{what} position words");
                    float[] values = r.Singles(groups * n, $"{what} N:M values");
                    try
                    {
                        return NmMatrix.Owning(rows, cols, (n, m), positions, values);
                    }
                    catch (ArgumentException e)
                    {
                        throw r.Error($"{what}'s N:M matrix is inconsistent: {Bare(e)}", start, e);
                    }
                }
            default:
                throw r.Error($"{what} has unknown matrix format {tag}", start);
        }
    }

    private static CsrMatrix.StoredValues Int8(ref Reader r, int rows, int nonZeros, string what)
    {
        float[] scales = r.Singles(rows, $"{what} row scales");
        return new(null, null, r.SBytes(nonZeros, $"{what} int8 values"), scales);
    }

    internal static float[]? ReadBias(ref Reader r, string what, int rows)
    {
        byte present = r.Byte($"{what} bias flag");
        if (present > 1) throw r.Error($"{what}'s bias flag is {present}, not 0 or 1", r.Position - 1);
        return present == 1 ? r.Singles(rows, $"{what} bias") : null;
    }

    /// <summary>Bounds-checked little-endian reads: every length is checked against the bytes left before allocating.</summary>
    internal ref struct Reader(ReadOnlySpan<byte> data, string source)
    {
        private readonly ReadOnlySpan<byte> _data = data;
        public int Position;
        /// <summary>The file's format version (what it may contain).</summary>
        public uint Version;

        public SparseModelFormatException Error(string problem, long offset, Exception? inner = null) => new(source, problem, offset, inner);

        /// <summary>Bytes not read yet.</summary>
        public readonly int Remaining => _data.Length - Position;

        private ReadOnlySpan<byte> Take(long count, string what)
        {
            if (count < 0 || count > _data.Length - Position)
                throw Error($"it ends inside {what} (needs {count} bytes, {_data.Length - Position} left)", Position);
            ReadOnlySpan<byte> span = _data.Slice(Position, (int)count);
            Position += (int)count;
            return span;
        }

        public byte Byte(string what) => Take(1, what)[0];
        public int Int32(string what) => BinaryPrimitives.ReadInt32LittleEndian(Take(4, what));
        public uint UInt32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, what));
        public float Single(string what) => BinaryPrimitives.ReadSingleLittleEndian(Take(4, what));

        public FeatureShape Shape(string what)
        {
            int at = Position;
            int c = Int32(what), h = Int32(what), w = Int32(what);
            try { return new FeatureShape(c, h, w); }
            catch (ArgumentException e) { throw Error($"the {what} {c}×{h}×{w} is invalid: {e.Message}", at, e); }
        }

        public float[] Singles(long count, string what) => Array<float>(count, 4, what);
        public int[] Int32s(long count, string what) => Array<int>(count, 4, what);
        public ushort[] UInt16s(long count, string what) => Array<ushort>(count, 2, what);
        public sbyte[] SBytes(long count, string what) => Array<sbyte>(count, 1, what);
        public byte[] Bytes(long count, string what) => Array<byte>(count, 1, what);

        private T[] Array<T>(long count, int size, string what) where T : unmanaged
        {
            // Checked before multiplying and before allocating: a hostile count can never ask for more than the file holds.
            if (count < 0 || count > (_data.Length - Position) / size)
                throw Error($"it ends inside {what} (needs {count} × {size} bytes, {_data.Length - Position} left)", Position);
            ReadOnlySpan<byte> bytes = Take(count * size, what);
            var result = new T[count];
            bytes.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(result.AsSpan()));
            if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("Reading model files needs a little-endian machine.");
            return result;
        }
    }
}
