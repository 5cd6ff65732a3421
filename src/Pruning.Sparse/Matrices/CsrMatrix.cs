using Pruning.Sparse.Kernels;

namespace Pruning.Sparse.Matrices;

/// <summary>
/// Compressed sparse rows: float32 values, column indices as uint16 when the matrix has at most 65 536 columns
/// (6 bytes per non-zero) and int32 otherwise, and int32 row pointers. Columns are strictly increasing within a row.
/// </summary>
public sealed class CsrMatrix : WeightMatrix
{
    /// <summary>The most columns whose indices fit uint16.</summary>
    internal const int MaxColumnsForUInt16 = ushort.MaxValue + 1;

    private readonly int[] _rowPointers;
    private readonly ushort[]? _columns16;
    private readonly int[]? _columns32;
    private readonly float[] _values;
    /// <summary>Row bounds for the last thread count used; one immutable object, published whole, so a thread never sees half of it.</summary>
    private RowSplit? _split;

    private sealed record RowSplit(int Parts, int[] Bounds);

    private CsrMatrix(int rows, int cols, int[] rowPointers, ushort[]? columns16, int[]? columns32, float[] values) : base(rows, cols)
    {
        _rowPointers = rowPointers;
        _columns16 = columns16;
        _columns32 = columns32;
        _values = values;
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
    internal static CsrMatrix Owning(int rows, int cols, int[] rowPointers, ushort[] columnIndices, float[] values)
    {
        if (cols > MaxColumnsForUInt16)
            throw new ArgumentOutOfRangeException(nameof(cols), cols, $"uint16 column indices cover at most {MaxColumnsForUInt16} columns.");
        Validate(rows, cols, rowPointers, values.Length, columnIndices.Length, j => columnIndices[j]);
        return new CsrMatrix(rows, cols, rowPointers, columnIndices, null, values);
    }

    /// <summary>A validated matrix over the loader's own arrays (int32 indices), which it takes over.</summary>
    internal static CsrMatrix Owning(int rows, int cols, int[] rowPointers, int[] columnIndices, float[] values)
    {
        if (cols <= MaxColumnsForUInt16)
            return Create(rows, cols, rowPointers, columnIndices, values);
        Validate(rows, cols, rowPointers, values.Length, columnIndices.Length, j => columnIndices[j]);
        return new CsrMatrix(rows, cols, rowPointers, null, columnIndices, values);
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

    /// <summary>Compresses row-major <paramref name="dense"/> values, keeping every non-zero entry (and no zero).</summary>
    public static CsrMatrix FromDense(ReadOnlySpan<float> dense, int rows, int cols)
    {
        if (rows <= 0) throw new ArgumentOutOfRangeException(nameof(rows), rows, "A weight matrix needs at least one row.");
        if (cols <= 0) throw new ArgumentOutOfRangeException(nameof(cols), cols, "A weight matrix needs at least one column.");
        if (dense.Length != (long)rows * cols)
            throw new ArgumentException($"Expected {(long)rows * cols} values for a {rows}×{cols} matrix, got {dense.Length}.", nameof(dense));
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
        return new CsrMatrix(rows, cols, rowPointers, columns16, columns32, values);
    }

    /// <inheritdoc />
    public override MatrixFormat Format => MatrixFormat.Csr;

    /// <inheritdoc />
    public override long StoredEntries => _values.Length;

    /// <inheritdoc />
    public override long NonZeros => _values.Length;

    /// <summary>True when the column indices are stored as uint16.</summary>
    internal bool HasNarrowIndices => _columns16 is not null;

    /// <inheritdoc />
    public override long StoredBytes => _values.Length * (sizeof(float) + (HasNarrowIndices ? sizeof(ushort) : sizeof(int))) + _rowPointers.Length * sizeof(int);

    /// <summary>Row pointers: row r's entries are [RowPointers[r], RowPointers[r + 1]).</summary>
    public ReadOnlySpan<int> RowPointers => _rowPointers;

    /// <summary>The non-zero values, row by row.</summary>
    public ReadOnlySpan<float> Values => _values;

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
                dense[(long)r * Cols + ColumnAt(j)] = _values[j];
        return dense;
    }

    internal override void ReadRow(int row, Span<float> destination)
    {
        destination[..Cols].Clear();
        for (int j = _rowPointers[row]; j < _rowPointers[row + 1]; j++) destination[ColumnAt(j)] = _values[j];
    }

    internal override unsafe void MultiplyCore(float* x, float* y, float* bias, int batch, int threads, SimdLevel simd)
    {
        // A gathered non-zero (batch 1) costs about as much as eight streamed dense multiply-adds.
        long work = batch == 1 ? NonZeros * 8 + Rows : (NonZeros + Rows) * batch;
        ForEachRowRange(work, threads, new Product(simd, x, y, bias, batch));
    }

    /// <summary>
    /// y[r, 0..width) = bias[r] + Σ values·x[offsets[column] + 0..width) (see <see cref="CsrKernels.SpmmShifted"/>).
    /// The caller guarantees every offset + width stays inside x.
    /// </summary>
    internal unsafe void MultiplyShiftedCore(float* x, int* offsets, float* y, float* bias, int width, int threads, SimdLevel simd) =>
        ForEachRowRange((NonZeros + Rows) * width, threads, new ShiftedProduct(simd, x, offsets, y, bias, width));

    /// <summary>A kernel over a range of rows, for either column index width.</summary>
    private unsafe interface IRowRangeKernel
    {
        void Run<TIndex>(int* rowPointers, TIndex* columns, float* values, int first, int end) where TIndex : unmanaged;
    }

    private readonly unsafe struct Product(SimdLevel simd, float* x, float* y, float* bias, int batch) : IRowRangeKernel
    {
        public void Run<TIndex>(int* rowPointers, TIndex* columns, float* values, int first, int end) where TIndex : unmanaged
        {
            if (batch == 1) CsrKernels.Spmv(simd, rowPointers, columns, values, x, y, bias, first, end);
            else CsrKernels.Spmm(simd, rowPointers, columns, values, x, y, bias, batch, first, end);
        }
    }

    private readonly unsafe struct ShiftedProduct(SimdLevel simd, float* x, int* offsets, float* y, float* bias, int width) : IRowRangeKernel
    {
        public void Run<TIndex>(int* rowPointers, TIndex* columns, float* values, int first, int end) where TIndex : unmanaged =>
            CsrKernels.SpmmShifted(simd, rowPointers, columns, values, x, offsets, y, bias, width, first, end);
    }

    /// <summary>Pins the matrix and runs <paramref name="kernel"/> over row ranges of about equal work on the kernel threads.</summary>
    private unsafe void ForEachRowRange<TKernel>(long work, int threads, TKernel kernel) where TKernel : struct, IRowRangeKernel
    {
        int[] bounds = Split(Parallelism.Chunks(Parallelism.Threads(threads, work, Rows), Rows));
        fixed (int* rp = _rowPointers)
        fixed (float* v = _values)
        fixed (ushort* c16 = _columns16)
        fixed (int* c32 = _columns32)
        {
            nint prp = (nint)rp, pv = (nint)v, pc16 = (nint)c16, pc32 = (nint)c32;
            bool narrow = HasNarrowIndices;
            Parallelism.Run(bounds, (first, end) =>
            {
                if (narrow) kernel.Run((int*)prp, (ushort*)pc16, (float*)pv, first, end);
                else kernel.Run((int*)prp, (int*)pc32, (float*)pv, first, end);
            });
        }
    }

    /// <summary>Row ranges of equal non-zero counts for <paramref name="parts"/> threads, cached for the last count used.</summary>
    private int[] Split(int parts)
    {
        if (Volatile.Read(ref _split) is { } cached && cached.Parts == parts) return cached.Bounds;
        int[] bounds = Parallelism.SplitByNonZeros(_rowPointers, parts);
        Volatile.Write(ref _split, new RowSplit(parts, bounds));
        return bounds;
    }
}
