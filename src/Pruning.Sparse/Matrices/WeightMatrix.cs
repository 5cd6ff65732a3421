using Pruning.Sparse.Kernels;

namespace Pruning.Sparse.Matrices;

/// <summary>How a layer's weight matrix is stored.</summary>
public enum MatrixFormat
{
    /// <summary>CSR when the matrix is sparse enough for the CSR kernels to win (see <see cref="WeightMatrix.CsrMaxDensity"/>), dense otherwise.</summary>
    Auto,
    /// <summary>Compressed sparse rows: float32 values, uint16 or int32 column indices, int32 row pointers.</summary>
    Csr,
    /// <summary>Row-major float32.</summary>
    Dense,
    /// <summary>CSR with IEEE half values (4 bytes per non-zero with uint16 indices): about 3 significant digits per weight.</summary>
    CsrFloat16,
    /// <summary>CSR with int8 values and a float32 scale per row (3 bytes per non-zero with uint16 indices).</summary>
    CsrInt8,
    /// <summary>Block-sparse rows with 1×4 blocks (four consecutive inputs of one output): see <see cref="BsrMatrix"/>.</summary>
    Bsr1x4,
    /// <summary>Block-sparse rows with 4×1 blocks (one input of four consecutive outputs).</summary>
    Bsr4x1,
    /// <summary>Block-sparse rows with 4×4 blocks.</summary>
    Bsr4x4,
    /// <summary>2:4 semi-structured: two values of every four inputs, positions packed (see <see cref="NmMatrix"/>).</summary>
    Nm2of4,
    /// <summary>4:8 semi-structured: four values of every eight inputs.</summary>
    Nm4of8,
}

/// <summary>
/// A float32 weight matrix W [rows, cols] that multiplies feature-major inputs: y[rows, batch] = W · x[cols, batch]
/// (+ bias per row). Batch 1 is a plain matrix-vector product. Immutable (it copies what it is built from) and safe to
/// share between threads.
/// </summary>
public abstract class WeightMatrix
{
    /// <summary>
    /// <see cref="MatrixFormat.Auto"/> stores a matrix as CSR when at most this fraction of its entries is non-zero.
    /// Measured at 4096×4096 on a 2-core AVX-512 machine against our dense kernels (docs/results/inference-speed.md): CSR
    /// is faster at batch 1 from 50 % sparsity on, and at batch 64 from 60 % on; this threshold is the batched one.
    /// A property, not a constant: it is a measured value that later versions may change.
    /// </summary>
    public static double CsrMaxDensity { get; } = 0.40;

    private protected WeightMatrix(int rows, int cols)
    {
        if (rows <= 0) throw new ArgumentOutOfRangeException(nameof(rows), rows, "A weight matrix needs at least one row.");
        if (cols <= 0) throw new ArgumentOutOfRangeException(nameof(cols), cols, "A weight matrix needs at least one column.");
        Rows = rows;
        Cols = cols;
    }

    /// <summary>Output features.</summary>
    public int Rows { get; }

    /// <summary>Input features.</summary>
    public int Cols { get; }

    /// <summary>The storage format.</summary>
    public abstract MatrixFormat Format { get; }

    /// <summary>Entries that are stored and multiplied (all of them for a dense matrix).</summary>
    public abstract long StoredEntries { get; }

    /// <summary>Non-zero entries.</summary>
    public abstract long NonZeros { get; }

    /// <summary>Bytes the kernels read for the matrix itself (values, indices, row pointers).</summary>
    public abstract long StoredBytes { get; }

    /// <summary>Fraction of zero entries.</summary>
    public double Sparsity => 1.0 - (double)NonZeros / ((long)Rows * Cols);

    /// <summary>The matrix as row-major float32.</summary>
    public virtual float[] ToDense()
    {
        var dense = new float[(long)Rows * Cols];
        for (int r = 0; r < Rows; r++) ReadRow(r, dense.AsSpan((int)((long)r * Cols), Cols));
        return dense;
    }

    /// <summary>
    /// Builds a matrix from row-major <paramref name="dense"/> values; <see cref="MatrixFormat.Auto"/> picks float32 CSR
    /// or dense by density (<see cref="CsrMaxDensity"/>); it never changes a value, so the compressed formats are only
    /// used when asked for (or chosen by <see cref="Tuning.FormatTuning"/> among the formats it is allowed).
    /// </summary>
    public static WeightMatrix FromDense(ReadOnlySpan<float> dense, int rows, int cols, MatrixFormat format = MatrixFormat.Auto)
    {
        CheckDense(dense, rows, cols);
        if (format == MatrixFormat.Auto)
        {
            long nonZeros = dense.Length - CountZeros(dense);
            format = nonZeros <= CsrMaxDensity * dense.Length ? MatrixFormat.Csr : MatrixFormat.Dense;
        }
        return format switch
        {
            MatrixFormat.Csr or MatrixFormat.CsrFloat16 or MatrixFormat.CsrInt8 => CsrMatrix.Compress(dense, rows, cols, format),
            MatrixFormat.Dense => DenseMatrix.Owning(dense.ToArray(), rows, cols),
            MatrixFormat.Bsr1x4 or MatrixFormat.Bsr4x1 or MatrixFormat.Bsr4x4 => BsrMatrix.FromDense(dense, rows, cols, BsrMatrix.ShapeOf(format)),
            MatrixFormat.Nm2of4 or MatrixFormat.Nm4of8 => NmMatrix.FromDense(dense, rows, cols, NmMatrix.PatternOf(format)),
            _ => throw new ArgumentOutOfRangeException(nameof(format), format, "Unknown matrix format."),
        };
    }

    /// <summary>Checks the arguments every format's FromDense takes: positive extents and rows × cols values.</summary>
    private protected static void CheckDense(ReadOnlySpan<float> dense, int rows, int cols)
    {
        if (rows <= 0) throw new ArgumentOutOfRangeException(nameof(rows), rows, "A weight matrix needs at least one row.");
        if (cols <= 0) throw new ArgumentOutOfRangeException(nameof(cols), cols, "A weight matrix needs at least one column.");
        if (dense.Length != (long)rows * cols)
            throw new ArgumentException($"Expected {(long)rows * cols} values for a {rows}×{cols} matrix, got {dense.Length}.", nameof(dense));
    }

    private static long CountZeros(ReadOnlySpan<float> values)
    {
        long zeros = 0;
        foreach (float v in values) if (v == 0) zeros++;
        return zeros;
    }

    /// <summary>
    /// y = W·x (+ bias). <paramref name="x"/> is [Cols, batch] and <paramref name="y"/> is [Rows, batch], both
    /// row-major (feature-major: for batch 1 these are plain vectors). <paramref name="threads"/> 0 uses every core;
    /// small products run on the calling thread. The widest vector path the CPU runs is used.
    /// </summary>
    public void Multiply(ReadOnlySpan<float> x, Span<float> y, int batch = 1, ReadOnlySpan<float> bias = default, int threads = 0) =>
        Multiply(x, y, batch, bias, threads, SimdSupport.Best);

    /// <summary><see cref="Multiply(ReadOnlySpan{float}, Span{float}, int, ReadOnlySpan{float}, int)"/> at a chosen vector width (tests run every path).</summary>
    internal unsafe void Multiply(ReadOnlySpan<float> x, Span<float> y, int batch, ReadOnlySpan<float> bias, int threads, SimdLevel simd)
    {
        if (batch <= 0) throw new ArgumentOutOfRangeException(nameof(batch), batch, "Batch must be positive.");
        if (x.Length != (long)Cols * batch) throw new ArgumentException($"Input must hold cols × batch = {(long)Cols * batch} values, got {x.Length}.", nameof(x));
        if (y.Length != (long)Rows * batch) throw new ArgumentException($"Output must hold rows × batch = {(long)Rows * batch} values, got {y.Length}.", nameof(y));
        if (!bias.IsEmpty && bias.Length != Rows) throw new ArgumentException($"Bias must hold {Rows} values, got {bias.Length}.", nameof(bias));
        fixed (float* px = x)
        fixed (float* py = y)
        fixed (float* pb = bias)
            MultiplyCore(px, py, bias.IsEmpty ? null : pb, batch, threads, simd);
    }

    /// <summary>Writes row <paramref name="row"/> as <see cref="Cols"/> dense values (an embedding lookup).</summary>
    internal abstract void ReadRow(int row, Span<float> destination);

    /// <summary>The kernel call behind <see cref="Multiply(ReadOnlySpan{float}, Span{float}, int, ReadOnlySpan{float}, int)"/>, on pinned, validated buffers.</summary>
    internal abstract unsafe void MultiplyCore(float* x, float* y, float* bias, int batch, int threads, SimdLevel simd);

    /// <summary>
    /// y[Rows, N] = bias + W·x for an operand read block by block (a convolution's im2col matrix), with
    /// <paramref name="scratch"/> of at least <see cref="ColumnsScratch"/> floats.
    /// </summary>
    internal unsafe void MultiplyColumns(ColumnSource x, float* y, float* bias, int threads, SimdLevel simd, Span<float> scratch)
    {
        long needed = ColumnsScratch(x.Columns);
        if (scratch.Length < needed) throw new ArgumentException($"The product needs {needed} floats of scratch, got {scratch.Length}.", nameof(scratch));
        fixed (float* buffer = scratch) MultiplyColumnsCore(x, y, bias, threads, simd, buffer);
    }

    /// <summary>
    /// <see cref="MultiplyColumns"/> on pinned, checked scratch. This default materializes the whole operand into it
    /// and runs <see cref="MultiplyCore"/>; formats whose kernels read blocks themselves override this and
    /// <see cref="ColumnsScratch"/>.
    /// </summary>
    internal virtual unsafe void MultiplyColumnsCore(ColumnSource x, float* y, float* bias, int threads, SimdLevel simd, float* scratch) =>
        MultiplyCore(x.Materialize(scratch, threads).Stored, y, bias, x.Columns, threads, simd);

    /// <summary>Floats of scratch <see cref="MultiplyColumns"/> needs for an operand of <paramref name="columns"/> columns.</summary>
    internal virtual long ColumnsScratch(int columns) => (long)Cols * columns;
}
