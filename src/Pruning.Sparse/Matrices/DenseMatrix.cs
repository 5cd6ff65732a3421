using System.Runtime.CompilerServices;
using Pruning.Sparse.Kernels;

namespace Pruning.Sparse.Matrices;

/// <summary>A row-major float32 matrix: the fallback for layers that are not sparse enough for CSR to pay.</summary>
public sealed class DenseMatrix : WeightMatrix
{
    private readonly float[] _values;
    private readonly long _nonZeros;

    /// <summary>A [rows, cols] matrix holding a copy of row-major <paramref name="values"/>.</summary>
    public DenseMatrix(ReadOnlySpan<float> values, int rows, int cols) : this(rows, cols, values.Length, values.ToArray()) { }

    private DenseMatrix(int rows, int cols, long length, float[] values) : base(rows, cols)
    {
        if (length != (long)rows * cols)
            throw new ArgumentException($"Expected {(long)rows * cols} values for a {rows}×{cols} matrix, got {length}.", nameof(values));
        _values = values;
        foreach (float v in values) if (v != 0) _nonZeros++;
    }

    /// <summary>A matrix that takes <paramref name="values"/> over (the caller must not keep or change it).</summary>
    internal static DenseMatrix Owning(float[] values, int rows, int cols) => new(rows, cols, values.Length, values);

    /// <inheritdoc />
    public override MatrixFormat Format => MatrixFormat.Dense;

    /// <inheritdoc />
    public override long StoredEntries => _values.Length;

    /// <inheritdoc />
    public override long NonZeros => _nonZeros;

    /// <inheritdoc />
    public override long StoredBytes => _values.Length * sizeof(float);

    /// <summary>The row-major values.</summary>
    public ReadOnlySpan<float> Values => _values;

    /// <inheritdoc />
    public override float[] ToDense() => (float[])_values.Clone();

    internal override void ReadRow(int row, Span<float> destination) => _values.AsSpan(row * Cols, Cols).CopyTo(destination);

    /// <summary>The weights packed for the blocked product, made on the first batch wide enough to use it.</summary>
    private PackedWeights? _packed;

    internal override unsafe void MultiplyCore(float* x, float* y, float* bias, int batch, int threads, SimdLevel simd)
    {
        if (batch >= Gemm.MinColumns)
        {
            Gemm.Multiply(simd, Packed, x, y, bias, batch, threads);
            return;
        }
        MultiplyByRows(x, y, bias, batch, threads, simd);
    }

    internal override unsafe void MultiplyColumnsCore(ColumnSource x, float* y, float* bias, int threads, SimdLevel simd, float* scratch)
    {
        if (x.Columns < Gemm.MinColumns)
        {
            base.MultiplyColumnsCore(x, y, bias, threads, simd, scratch);
            return;
        }
        // The packing buffers first; a narrow computed operand is materialized after them, because the product splits
        // it by rows and every row group would pack the same computed columns again.
        float* packing = scratch, operand = scratch + Gemm.PackingFloats(Cols, x.Columns) * WorkerPool.Shared.Slots;
        if (x.Stored == null && x.Columns <= MaterializedColumns) x = x.Materialize(operand, threads);
        Gemm.Multiply(simd, Packed, x, y, bias, threads, packing);
    }

    /// <summary>
    /// The shifted product of a direct convolution with dense filters (see <see cref="CsrMatrix.MultiplyShiftedCore"/>,
    /// whose column blocks, tiles and stores it shares): each part computes four filters at a time over one block of
    /// the wide output (<see cref="DenseKernels.MultiplyShifted"/>: two vectors of the shifted input and four broadcast weights feed eight multiply-adds), and its valid positions go straight to the output.
    /// </summary>
    internal unsafe void MultiplyShiftedCore(float* x, int* offsets, ShiftedOutput output, float* tiles, float* bias, int width, int threads, SimdLevel simd, int footprintRows)
    {
        long slot = CsrMatrix.ShiftedSlot(Rows, width, footprintRows);
        // Column blocks as the CSR product cuts them; row groups of whole quads of filters when blocks are fewer than parts.
        var (parts, blockWidth, blocks) = CsrMatrix.ColumnBlocks(Rows, width, (long)Rows * Cols * width, threads, footprintRows, output.Align);
        int quads = (Rows + 3) / 4;
        int groups = Math.Clamp((parts + blocks - 1) / blocks, 1, quads);
        var tasks = new int[blocks * groups + 1];
        for (int t = 1; t < tasks.Length; t++) tasks[t] = t;
        int rows = Rows, k = Cols;
        fixed (float* w = _values)
        {
            nint pw = (nint)w, px = (nint)x, po = (nint)offsets, pt = (nint)tiles, pb = (nint)bias;
            Parallelism.Run(tasks, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (firstTask, endTask) =>
            {
                for (int t = firstTask; t < endTask; t++)
                {
                    int block = t % blocks, group = t / blocks;
                    int c0 = block * blockWidth, count = Math.Min(blockWidth, width - c0);
                    int first = Math.Min(rows, 4 * (int)((long)quads * group / groups)), end = Math.Min(rows, 4 * (int)((long)quads * (group + 1) / groups));
                    if (first == end) continue;
                    // Whole: row r at tiles + r·width + c0. Tiled: row r at tile + (r − first)·count.
                    long pitch = slot == 0 ? width : count;
                    float* y = slot == 0 ? (float*)pt + c0 : (float*)pt + WorkerPool.Slot * slot - first * pitch;
                    DenseKernels.MultiplyShifted(simd, (float*)pw, k, (int*)po, (float*)px + c0, y, pitch, (float*)pb, count, first, end);
                    output.Store(y + first * pitch, pitch, c0, count, first, end);
                }
            });
        }
    }

    /// <summary>
    /// Computed operands up to this many columns are materialized whole (in parallel) before the product: below it the
    /// GEMM splits its work by rows (<see cref="Gemm.Multiply(SimdLevel, PackedWeights, ColumnSource, float*, float*, int, float*)"/>
    /// cuts column blocks only with four panels of 32 per part).
    /// </summary>
    private static int MaterializedColumns => 4 * Parallelism.ChunksPerThread * WorkerPool.Shared.Slots * 32;

    /// <summary>
    /// One packing buffer per thread for the blocked product, and room to materialize a narrow operand (also the row
    /// kernel's, below <see cref="Gemm.MinColumns"/>). The size never shrinks as the columns grow: buffers sized for
    /// one batch serve every smaller one.
    /// </summary>
    internal override long ColumnsScratch(int columns) =>
        (long)Cols * Math.Min(columns, MaterializedColumns) + Gemm.PackingFloats(Cols, columns) * WorkerPool.Shared.Slots;

    private PackedWeights Packed => LazyInitializer.EnsureInitialized(ref _packed, () => new PackedWeights(_values, Rows, Cols));

    /// <summary>The row-blocked kernel, without packing: for narrow batches (and as the benchmarks' baseline).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal unsafe void MultiplyByRows(float* x, float* y, float* bias, int batch, int threads, SimdLevel simd)
    {
        int parts = Parallelism.Chunks(Parallelism.Threads(threads, StoredEntries * batch, Rows), (Rows + 3) / 4);
        var bounds = new int[parts + 1];
        // Equal rows per part, in multiples of four so the 4-row micro-kernel stays whole.
        for (int p = 1; p < parts; p++) bounds[p] = Math.Min(Rows, (int)((long)Rows * p / parts / 4 * 4));
        bounds[parts] = Rows;
        nint px = (nint)x, py = (nint)y, pb = (nint)bias;
        fixed (float* w = _values)
        {
            nint pw = (nint)w;
            Parallelism.Run(bounds, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (first, end) =>
                DenseKernels.Multiply(simd, (float*)pw, Cols, (float*)px, (float*)py, (float*)pb, batch, first, end));
        }
    }
}
