using System.Runtime.CompilerServices;
using Pruning.Sparse.Kernels;

namespace Pruning.Sparse.Matrices;

/// <summary>
/// Compressed sparse rows: column indices as uint16 when the matrix has at most 65 536 columns and int32 otherwise,
/// int32 row pointers, and values as float32 (<see cref="MatrixFormat.Csr"/>: 6 bytes per non-zero with uint16
/// indices), IEEE half (<see cref="MatrixFormat.CsrFloat16"/>: 4 bytes) or int8 with one float32 scale per row
/// (<see cref="MatrixFormat.CsrInt8"/>: 3 bytes). Columns are strictly increasing within a row. The kernels decode
/// compressed values in registers; at batch 1 they are bound by the bytes read, so fewer bytes run faster.
/// </summary>
public sealed class CsrMatrix : WeightMatrix
{
    /// <summary>The most columns whose indices fit uint16.</summary>
    internal const int MaxColumnsForUInt16 = ushort.MaxValue + 1;

    private readonly int[] _rowPointers;
    private readonly ushort[]? _columns16;
    private readonly int[]? _columns32;
    private readonly StoredValues _values;
    /// <summary>Row ranges of equal non-zero counts, cached for the last thread count used.</summary>
    private readonly NonZeroSplit _split;

    /// <summary>The values in exactly one encoding: float32; half bits; or int8 with a scale per row.</summary>
    internal sealed record StoredValues(float[]? Float32, ushort[]? Float16, sbyte[]? Int8, float[]? Scales)
    {
        public int Count => Float32?.Length ?? Float16?.Length ?? Int8!.Length;

        public MatrixFormat Format => Float32 is not null ? MatrixFormat.Csr : Float16 is not null ? MatrixFormat.CsrFloat16 : MatrixFormat.CsrInt8;

        public int BytesPerValue => Float32 is not null ? sizeof(float) : Float16 is not null ? sizeof(ushort) : sizeof(sbyte);

        public float At(int row, int j) =>
            Float32 is not null ? Float32[j] : Float16 is not null ? Float16Values.Decode(Float16[j]) : Scales![row] * Int8![j];

        /// <summary>Checks what the kernels rely on: one encoding, counts that agree, halves finite, q ≠ −128, scales finite and ≥ 0.</summary>
        public void Validate(int rows)
        {
            int encodings = (Float32 is null ? 0 : 1) + (Float16 is null ? 0 : 1) + (Int8 is null ? 0 : 1);
            if (encodings != 1) throw new ArgumentException("Exactly one value encoding must be given.", "values");
            if ((Int8 is null) != (Scales is null)) throw new ArgumentException("int8 values need one scale per row, and only they do.", "values");
            if (Scales is not null)
            {
                if (Scales.Length != rows) throw new ArgumentException($"int8 values need {rows} row scales, got {Scales.Length}.", "values");
                for (int r = 0; r < rows; r++)
                    if (!float.IsFinite(Scales[r]) || Scales[r] < 0) throw new ArgumentException($"Row {r}'s scale {Scales[r]} is not a finite, non-negative number.", "values");
                for (int j = 0; j < Int8!.Length; j++)
                    if (Int8[j] == sbyte.MinValue) throw new ArgumentException($"int8 value {j} is −128; the symmetric encoding uses [−127, 127].", "values");
            }
            if (Float16 is not null)
                for (int j = 0; j < Float16.Length; j++)
                    if ((Float16[j] & 0x7c00) == 0x7c00) throw new ArgumentException($"Half value {j} (bits 0x{Float16[j]:x4}) is infinite or NaN.", "values");
        }
    }

    private CsrMatrix(int rows, int cols, int[] rowPointers, ushort[]? columns16, int[]? columns32, StoredValues values) : base(rows, cols)
    {
        _rowPointers = rowPointers;
        _columns16 = columns16;
        _columns32 = columns32;
        _values = values;
        _split = new NonZeroSplit(rowPointers);
    }

    private CsrMatrix(int rows, int cols, int[] rowPointers, ushort[]? columns16, int[]? columns32, float[] values)
        : this(rows, cols, rowPointers, columns16, columns32, new StoredValues(values, null, null, null))
    {
    }

    /// <summary>
    /// Builds a CSR matrix from copies of its arrays. Every invariant is checked: row pointers start at 0, never
    /// decrease and end at the value count; columns are in range and strictly increasing per row.
    /// </summary>
    public static CsrMatrix Create(int rows, int cols, ReadOnlySpan<int> rowPointers, ReadOnlySpan<int> columnIndices, ReadOnlySpan<float> values)
    {
        int[] columns = columnIndices.ToArray(), pointers = rowPointers.ToArray();
        Validate(rows, cols, pointers, values.Length, columns.Length, j => columns[j]);
        ushort[]? narrow = null;
        if (cols <= MaxColumnsForUInt16)
        {
            narrow = new ushort[columns.Length];
            for (int j = 0; j < narrow.Length; j++) narrow[j] = (ushort)columns[j];
        }
        return new CsrMatrix(rows, cols, pointers, narrow, narrow is null ? columns : null, values.ToArray());
    }

    /// <summary>A validated matrix over the loader's own arrays (uint16 indices), which it takes over.</summary>
    internal static CsrMatrix Owning(int rows, int cols, int[] rowPointers, ushort[] columnIndices, StoredValues values)
    {
        if (cols > MaxColumnsForUInt16)
            throw new ArgumentOutOfRangeException(nameof(cols), cols, $"uint16 column indices cover at most {MaxColumnsForUInt16} columns.");
        values.Validate(rows);
        Validate(rows, cols, rowPointers, values.Count, columnIndices.Length, j => columnIndices[j]);
        return new CsrMatrix(rows, cols, rowPointers, columnIndices, null, values);
    }

    /// <summary>A validated matrix over the loader's own arrays (int32 indices), which it takes over.</summary>
    internal static CsrMatrix Owning(int rows, int cols, int[] rowPointers, int[] columnIndices, StoredValues values)
    {
        values.Validate(rows);
        Validate(rows, cols, rowPointers, values.Count, columnIndices.Length, j => columnIndices[j]);
        if (cols > MaxColumnsForUInt16) return new CsrMatrix(rows, cols, rowPointers, null, columnIndices, values);
        var narrow = new ushort[columnIndices.Length];
        for (int j = 0; j < narrow.Length; j++) narrow[j] = (ushort)columnIndices[j];
        return new CsrMatrix(rows, cols, rowPointers, narrow, null, values);
    }

    private static void Validate(int rows, int cols, int[] rowPointers, int valueCount, int columnCount, Func<int, int> column)
    {
        if (rows <= 0) throw new ArgumentOutOfRangeException(nameof(rows), rows, "A weight matrix needs at least one row.");
        if (cols <= 0) throw new ArgumentOutOfRangeException(nameof(cols), cols, "A weight matrix needs at least one column.");
        if (rowPointers.Length != (long)rows + 1)
            throw new ArgumentException($"Row pointers must hold rows + 1 = {(long)rows + 1} entries, got {rowPointers.Length}.", nameof(rowPointers));
        if (columnCount != valueCount)
            throw new ArgumentException($"Column indices ({columnCount}) and values ({valueCount}) must have the same length.", "columnIndices");
        if (rowPointers[0] != 0) throw new ArgumentException($"Row pointers must start at 0, got {rowPointers[0]}.", nameof(rowPointers));
        if (rowPointers[rows] != valueCount)
            throw new ArgumentException($"The last row pointer must equal the value count {valueCount}, got {rowPointers[rows]}.", nameof(rowPointers));
        for (int r = 0; r < rows; r++)
        {
            int start = rowPointers[r], stop = rowPointers[r + 1];
            if (stop < start || stop > valueCount)
                throw new ArgumentException($"Row pointers must not decrease: row {r} spans [{start}, {stop}).", nameof(rowPointers));
            int previous = -1;
            for (int j = start; j < stop; j++)
            {
                int c = column(j);
                if (c <= previous || c >= cols)
                    throw new ArgumentException(c >= cols
                        ? $"Column index {c} in row {r} is outside [0, {cols})."
                        : $"Column indices in row {r} must be strictly increasing ({previous} then {c}).", "columnIndices");
                previous = c;
            }
        }
    }

    /// <summary>Compresses row-major <paramref name="dense"/> values, keeping every non-zero entry (and no zero), as float32.</summary>
    public static CsrMatrix FromDense(ReadOnlySpan<float> dense, int rows, int cols) => Compress(dense, rows, cols, MatrixFormat.Csr);

    /// <summary>
    /// Compresses row-major <paramref name="dense"/> values, keeping every non-zero entry, with the values in
    /// <paramref name="format"/>: <see cref="MatrixFormat.Csr"/> (float32, exact), <see cref="MatrixFormat.CsrFloat16"/>
    /// (rounded to the nearest half: relative error at most 2⁻¹¹ for |w| ≥ 6.1·10⁻⁵, absolute at most 2⁻²⁵ below;
    /// |w| > 65 504 is refused) or <see cref="MatrixFormat.CsrInt8"/> (q = round(w / s), s = max |w| of the row / 127:
    /// absolute error at most s / 2 per value). An entry that rounds to zero stays stored, so the structure never changes.
    /// </summary>
    public static CsrMatrix Compress(ReadOnlySpan<float> dense, int rows, int cols, MatrixFormat format)
    {
        if (format is not (MatrixFormat.Csr or MatrixFormat.CsrFloat16 or MatrixFormat.CsrInt8))
            throw new ArgumentOutOfRangeException(nameof(format), format, "A CSR matrix stores its values as Csr (float32), CsrFloat16 or CsrInt8.");
        CheckDense(dense, rows, cols);
        int nonZeros = 0;
        foreach (float v in dense) if (v != 0) nonZeros++;
        var rowPointers = new int[rows + 1];
        var values = new float[nonZeros];
        bool narrow = cols <= MaxColumnsForUInt16;
        ushort[]? columns16 = narrow ? new ushort[nonZeros] : null;
        int[]? columns32 = narrow ? null : new int[nonZeros];
        int j = 0;
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> row = dense.Slice(r * cols, cols);
            for (int c = 0; c < cols; c++)
            {
                if (row[c] == 0) continue;
                values[j] = row[c];
                if (narrow) columns16![j] = (ushort)c; else columns32![j] = c;
                j++;
            }
            rowPointers[r + 1] = j;
        }
        return new CsrMatrix(rows, cols, rowPointers, columns16, columns32, Encode(values, rowPointers, format));
    }

    private static StoredValues Encode(float[] values, int[] rowPointers, MatrixFormat format)
    {
        switch (format)
        {
            case MatrixFormat.CsrFloat16:
            {
                var half = new ushort[values.Length];
                for (int j = 0; j < values.Length; j++)
                {
                    if (!float.IsFinite(values[j]) || Math.Abs(values[j]) > (float)Half.MaxValue)
                        throw new ArgumentException($"Value {values[j]} (stored entry {j}) cannot be stored as a half: it is beyond ±65 504 or not finite.", "dense");
                    half[j] = BitConverter.HalfToUInt16Bits((Half)values[j]);
                }
                return new StoredValues(null, half, null, null);
            }
            case MatrixFormat.CsrInt8:
            {
                int rows = rowPointers.Length - 1;
                var q = new sbyte[values.Length];
                var scales = new float[rows];
                for (int r = 0; r < rows; r++)
                {
                    float max = 0;
                    for (int j = rowPointers[r]; j < rowPointers[r + 1]; j++)
                    {
                        if (!float.IsFinite(values[j])) throw new ArgumentException($"Value {values[j]} (row {r}) is not finite.", "dense");
                        max = Math.Max(max, Math.Abs(values[j]));
                    }
                    float scale = max / 127f;
                    scales[r] = scale;
                    for (int j = rowPointers[r]; j < rowPointers[r + 1]; j++)
                        q[j] = scale == 0 ? (sbyte)0 : (sbyte)Math.Clamp(MathF.Round(values[j] / scale, MidpointRounding.ToEven), -127, 127);
                }
                return new StoredValues(null, null, q, scales);
            }
            default:
                return new StoredValues(values, null, null, null);
        }
    }

    /// <inheritdoc />
    public override MatrixFormat Format => _values.Format;

    /// <inheritdoc />
    public override long StoredEntries => _values.Count;

    /// <inheritdoc />
    public override long NonZeros => _values.Count;

    /// <summary>True when the column indices are stored as uint16.</summary>
    internal bool HasNarrowIndices => _columns16 is not null;

    /// <inheritdoc />
    public override long StoredBytes => (long)_values.Count * (_values.BytesPerValue + (HasNarrowIndices ? sizeof(ushort) : sizeof(int)))
        + _rowPointers.Length * sizeof(int) + (_values.Scales?.Length ?? 0) * sizeof(float);

    /// <summary>Row pointers: row r's entries are [RowPointers[r], RowPointers[r + 1]).</summary>
    public ReadOnlySpan<int> RowPointers => _rowPointers;

    /// <summary>The float32 values, row by row, of a <see cref="MatrixFormat.Csr"/> matrix (<see cref="ValueAt"/> decodes any format).</summary>
    /// <exception cref="InvalidOperationException">The values are stored compressed.</exception>
    public ReadOnlySpan<float> Values => _values.Float32 ?? throw new InvalidOperationException($"This matrix stores its values as {Format}; use ValueAt to decode them.");

    /// <summary>The j-th stored value (of row <paramref name="row"/>), decoded to float32.</summary>
    public float ValueAt(int row, int j) => _values.At(row, j);

    /// <summary>The stored values in their encoding (the file writer's view).</summary>
    internal StoredValues Stored => _values;

    /// <summary>The uint16 column indices (empty when the indices are int32).</summary>
    internal ReadOnlySpan<ushort> ColumnIndices16 => _columns16;

    /// <summary>The int32 column indices (empty when the indices are uint16).</summary>
    internal ReadOnlySpan<int> ColumnIndices32 => _columns32;

    /// <summary>Column index of the j-th stored value.</summary>
    public int ColumnAt(int j) => _columns16 is not null ? _columns16[j] : _columns32![j];

    /// <inheritdoc />
    public override float[] ToDense()
    {
        var dense = new float[(long)Rows * Cols];
        for (int r = 0; r < Rows; r++)
            for (int j = _rowPointers[r]; j < _rowPointers[r + 1]; j++)
                dense[(long)r * Cols + ColumnAt(j)] = _values.At(r, j);
        return dense;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal override void ReadRow(int row, Span<float> destination)
    {
        destination[..Cols].Clear();
        for (int j = _rowPointers[row]; j < _rowPointers[row + 1]; j++) destination[ColumnAt(j)] = _values.At(row, j);
    }

    internal override unsafe void MultiplyCore(float* x, float* y, float* bias, int batch, int threads, SimdLevel simd)
    {
        // A gathered non-zero (batch 1) costs about as much as eight streamed dense multiply-adds.
        if (batch == 1) ForEachPart(1, NonZeros * 8 + Rows, threads, Cols, new VectorProduct(simd, x, y, bias));
        else MultiplyBlocks(new StoredColumns(x, Cols, batch), y, bias, threads, simd, null, 0);
    }

    /// <summary>
    /// y[Rows, N] = bias + W·x for an operand read block by block: each block of columns is copied (when it is not
    /// stored) into a per-thread buffer and serves every row while it is in cache.
    /// </summary>
    internal override unsafe void MultiplyColumnsCore(ColumnSource x, float* y, float* bias, int threads, SimdLevel simd, float* scratch)
    {
        // Too few columns for a block per part: the parts would share blocks and each copy them again.
        if (x.Stored == null && x.Columns <= MaterializedColumns) x = x.Materialize(scratch, threads);
        MultiplyBlocks(x, y, bias, threads, simd, scratch, x.Stored != null ? 0 : (long)Cols * WidestBlock(x.Columns, Cols));
    }

    /// <summary>
    /// Operands up to this many columns are materialized whole (in parallel) rather than copied block by block:
    /// enough blocks of the widest kind for every part of a two-thread run.
    /// </summary>
    private int MaterializedColumns => Parallelism.ChunksPerThread * WorkerPool.Shared.Slots * WidestBlock(int.MaxValue, Cols);

    /// <summary>
    /// One block of the operand per thread that can run a part (<see cref="WorkerPool.Slots"/>), or the whole operand
    /// when it is narrow enough to be materialized; never less for more columns, so buffers sized for one batch serve
    /// every smaller one.
    /// </summary>
    internal override long ColumnsScratch(int columns) =>
        (long)Cols * Math.Max(WidestBlock(columns, Cols) * (long)WorkerPool.Shared.Slots, Math.Min(columns, MaterializedColumns));

    private unsafe void MultiplyBlocks(ColumnSource x, float* y, float* bias, int threads, SimdLevel simd, float* blocks, long slot) =>
        ForEachPart(x.Columns, (NonZeros + Rows) * x.Columns, threads, Cols, new BlockProduct(simd, x, y, bias, blocks, slot));

    /// <summary>
    /// out = bias[r] + Σ values·x[offsets[column] + 0..width) (see <see cref="CsrKernels.SpmmShifted"/>), in column
    /// blocks sized for <paramref name="footprintRows"/> distinct operand rows (a convolution's input channels: its taps
    /// overlap). Each block is computed into <paramref name="tiles"/> (<see cref="ShiftedTilesFloats"/> floats) and
    /// stored by <paramref name="output"/> while it is in cache: a wide product that is no larger than one block per
    /// thread is laid out whole in the tiles, a wider one goes through one block-sized tile per
    /// <see cref="WorkerPool.Slot"/>, so the wide product is never in memory whole. The caller guarantees every
    /// offset + width stays inside x.
    /// </summary>
    internal unsafe void MultiplyShiftedCore(float* x, int* offsets, ShiftedOutput output, float* tiles, float* bias, int width, int threads, SimdLevel simd, int footprintRows) =>
        ForEachPart(width, (NonZeros + Rows) * width, threads, footprintRows,
            new ShiftedProduct(simd, x, offsets, output, tiles, ShiftedSlot(Rows, width, footprintRows), width, bias), output.Align);

    /// <summary>
    /// Floats a shifted product of <paramref name="rows"/> rows needs for its tiles (CSR or dense): the whole wide
    /// product when it is no wider than one block per thread, else one block-sized tile per <see cref="WorkerPool.Slots"/>;
    /// never fewer for a wider product.
    /// </summary>
    internal static long ShiftedTilesFloats(int rows, int width, int footprintRows) =>
        ShiftedSlot(rows, width, footprintRows) == 0 ? (long)rows * width : WorkerPool.Shared.Slots * ShiftedSlot(rows, width, footprintRows);

    /// <summary>Floats of one thread's tile, or 0 when the wide product is laid out whole.</summary>
    internal static long ShiftedSlot(int rows, int width, int footprintRows) =>
        width <= (long)WorkerPool.Shared.Slots * WidestBlock(width, footprintRows) ? 0 : (long)rows * WidestBlock(width, footprintRows);

    /// <summary>A kernel over a range of rows and a block of columns, for either column index width.</summary>
    private unsafe interface IPartKernel
    {
        void Run<TIndex, TValues>(int* rowPointers, TIndex* columns, TValues values, int c0, int count, int first, int end) where TIndex : unmanaged where TValues : struct, ICsrValues;
    }

    private readonly unsafe struct VectorProduct(SimdLevel simd, float* x, float* y, float* bias) : IPartKernel
    {
        public void Run<TIndex, TValues>(int* rowPointers, TIndex* columns, TValues values, int c0, int count, int first, int end) where TIndex : unmanaged where TValues : struct, ICsrValues =>
            CsrKernels.Spmv(simd, rowPointers, columns, values, x, y, bias, first, end);
    }

    /// <summary>
    /// A block of columns of the product. A computed operand's block is first copied into this thread's slot of
    /// <paramref name="blocks"/> (<paramref name="slot"/> floats each).
    /// </summary>
    private readonly unsafe struct BlockProduct(SimdLevel simd, ColumnSource x, float* y, float* bias, float* blocks, long slot) : IPartKernel
    {
        public void Run<TIndex, TValues>(int* rowPointers, TIndex* columns, TValues values, int c0, int count, int first, int end) where TIndex : unmanaged where TValues : struct, ICsrValues
        {
            if (x.Stored != null)
            {
                CsrKernels.Spmm(simd, rowPointers, columns, values, x.Stored + c0, new StridedRows(x.Columns), y + c0, x.Columns, bias, count, first, end);
                return;
            }
            float* block = blocks + WorkerPool.Slot * slot;
            x.Copy(0, x.Rows, c0, count, block, count);
            CsrKernels.Spmm(simd, rowPointers, columns, values, block, new StridedRows(count), y + c0, x.Columns, bias, count, first, end);
        }
    }

    /// <summary>A block of a shifted product: into the whole wide layout (<paramref name="slot"/> 0) or into this thread's tile.</summary>
    private readonly unsafe struct ShiftedProduct(SimdLevel simd, float* x, int* offsets, ShiftedOutput output, float* tiles, long slot, int width, float* bias) : IPartKernel
    {
        public void Run<TIndex, TValues>(int* rowPointers, TIndex* columns, TValues values, int c0, int count, int first, int end) where TIndex : unmanaged where TValues : struct, ICsrValues
        {
            // Whole: row r at tiles + r·width + c0. Tiled: row r at tile + (r − first)·count (the kernel's y shifted back by first rows).
            long pitch = slot == 0 ? width : count;
            float* y = slot == 0 ? tiles + c0 : tiles + WorkerPool.Slot * slot - first * pitch;
            CsrKernels.Spmm(simd, rowPointers, columns, values, x + c0, new ShiftedRows(offsets), y, pitch, bias, count, first, end);
            output.Store(y + first * pitch, pitch, c0, count, first, end);
        }
    }

    /// <summary>Operand floats a column block should span: 256 KB, which stays in L2 while every row passes over it.</summary>
    private const int BlockFloats = 64 * 1024;

    /// <summary>Column blocks are whole multiples of this many columns (the kernels' tiles), between one and 16 multiples.</summary>
    private const int BlockUnit = 64;

    /// <summary>The widest column block for an operand of <paramref name="n"/> columns whose blocks span <paramref name="footprintRows"/> rows.</summary>
    private static int WidestBlock(int n, int footprintRows) =>
        n <= BlockUnit ? n : Math.Min(n, Math.Clamp(BlockFloats / Math.Max(1, footprintRows) / BlockUnit * BlockUnit, BlockUnit, 16 * BlockUnit));

    /// <summary>
    /// How a product of <paramref name="rows"/> rows over <paramref name="n"/> columns is cut for the kernel threads
    /// (CSR, and the dense shifted product alike): the parts its <paramref name="work"/> justifies, and column blocks.
    /// An operand that fits one block stays whole and the rows are split (the widest tiles, each weight read once); a
    /// larger one is cut into blocks of at least two tiles, as even as the parts allow. With <paramref name="align"/>
    /// &gt; 1 (at most <see cref="MaxShiftedAlign"/>) blocks are whole multiples of it, and of 16 columns too when that fits.
    /// </summary>
    internal static (int Parts, int Width, int Blocks) ColumnBlocks(int rows, int n, long work, int threads, int footprintRows, int align = 1)
    {
        int units = rows * (n / BlockUnit + 1);
        int parts = Parallelism.Chunks(Parallelism.Threads(threads, work, units), units);
        int width = WidestBlock(n, footprintRows);
        if (width < n) width = Math.Min(width, Math.Max(2 * BlockUnit, (int)(((long)n + parts - 1) / parts + BlockUnit - 1) / BlockUnit * BlockUnit));
        if (align > 1 && width < n)
        {
            if (align > MaxShiftedAlign(n, footprintRows))
                throw new ArgumentOutOfRangeException(nameof(align), align, $"Blocks of {n} columns over {footprintRows} rows cannot be aligned to more than {MaxShiftedAlign(n, footprintRows)}.");
            int unit = align % 16 == 0 ? align : align % 8 == 0 ? 2 * align : align % 4 == 0 ? 4 * align : align % 2 == 0 ? 8 * align : 16 * align;   // lcm(align, 16)
            if (unit > width) unit = align;
            width = Math.Max(unit, width / unit * unit);
        }
        return (parts, width, (int)(((long)n + width - 1) / width));
    }

    /// <summary>The largest alignment <see cref="ColumnBlocks"/> can give blocks of <paramref name="n"/> columns without outgrowing the tiles.</summary>
    internal static int MaxShiftedAlign(int n, int footprintRows) => WidestBlock(n, footprintRows);

    /// <summary>
    /// Pins the matrix and runs <paramref name="kernel"/> over parts of about equal work on the kernel threads: column
    /// blocks of the N columns, sized so that <paramref name="footprintRows"/> operand rows of one block fit in
    /// <see cref="BlockFloats"/>, and when there are fewer blocks than parts, row ranges of equal non-zeros within each.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private unsafe void ForEachPart<TKernel>(int n, long work, int threads, int footprintRows, TKernel kernel, int align = 1) where TKernel : struct, IPartKernel
    {
        var (parts, width, blocks) = ColumnBlocks(Rows, n, work, threads, footprintRows, align);
        int rowGroups = Math.Clamp((parts + blocks - 1) / blocks, 1, Rows);
        int[] rowBounds = _split.For(rowGroups);
        var tasks = new int[blocks * rowGroups + 1];
        for (int t = 1; t < tasks.Length; t++) tasks[t] = t;
        fixed (int* rp = _rowPointers)
        fixed (float* v32 = _values.Float32)
        fixed (ushort* v16 = _values.Float16)
        fixed (sbyte* v8 = _values.Int8)
        fixed (float* scales = _values.Scales)
        fixed (ushort* c16 = _columns16)
        fixed (int* c32 = _columns32)
        {
            nint prp = (nint)rp, pv32 = (nint)v32, pv16 = (nint)v16, pv8 = (nint)v8, ps = (nint)scales, pc16 = (nint)c16, pc32 = (nint)c32;
            MatrixFormat encoding = Format;
            bool narrow = HasNarrowIndices;
            Parallelism.Run(tasks, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (firstTask, endTask) =>
            {
                for (int t = firstTask; t < endTask; t++)
                {
                    int block = t % blocks, group = t / blocks;
                    int c0 = block * width, count = Math.Min(width, n - c0), first = rowBounds[group], end = rowBounds[group + 1];
                    if (first == end) continue;
                    switch (encoding)
                    {
                        case MatrixFormat.CsrFloat16: Run(kernel, narrow, prp, pc16, pc32, new Float16Values((ushort*)pv16), c0, count, first, end); break;
                        case MatrixFormat.CsrInt8: Run(kernel, narrow, prp, pc16, pc32, new Int8Values((sbyte*)pv8, (float*)ps), c0, count, first, end); break;
                        default: Run(kernel, narrow, prp, pc16, pc32, new Float32Values((float*)pv32), c0, count, first, end); break;
                    }
                }
            });
        }
    }

    private static unsafe void Run<TKernel, TValues>(TKernel kernel, bool narrow, nint rowPointers, nint columns16, nint columns32, TValues values, int c0, int count, int first, int end)
        where TKernel : struct, IPartKernel where TValues : struct, ICsrValues
    {
        if (narrow) kernel.Run((int*)rowPointers, (ushort*)columns16, values, c0, count, first, end);
        else kernel.Run((int*)rowPointers, (int*)columns32, values, c0, count, first, end);
    }
}
