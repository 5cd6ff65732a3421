using System.Runtime.CompilerServices;
using Pruning.Sparse.Kernels;

namespace Pruning.Sparse.Matrices;

/// <summary>
/// Block-sparse rows: the matrix cut into R×C blocks (1×4, 4×1 or 4×4); only blocks holding a non-zero are stored,
/// each as R·C float32 values (its zeros included), with one column index per block (uint16 when there are at most
/// 65 536 block columns) and int32 pointers per block row. What <c>PruningGranularity.Blocks(r, c)</c> trains fits it
/// without fill-in; 4-row blocks let the batched kernel load each input once for four outputs, 4-column blocks let
/// batch 1 read four consecutive inputs without a gather. Rows must be a multiple of R and columns of C.
/// </summary>
public sealed class BsrMatrix : WeightMatrix
{
    private readonly int[] _blockRowPointers;
    private readonly ushort[]? _columns16;
    private readonly int[]? _columns32;
    private readonly float[] _values;
    private readonly long _nonZeros;
    /// <summary>Block-row ranges of equal block counts, cached for the last thread count used.</summary>
    private readonly NonZeroSplit _split;

    private BsrMatrix(int rows, int cols, (int R, int C) block, int[] blockRowPointers, ushort[]? columns16, int[]? columns32, float[] values) : base(rows, cols)
    {
        Block = block;
        _blockRowPointers = blockRowPointers;
        _columns16 = columns16;
        _columns32 = columns32;
        _values = values;
        _split = new NonZeroSplit(blockRowPointers);
        foreach (float v in values) if (v != 0) _nonZeros++;
    }

    /// <summary>The block shapes the kernels run.</summary>
    public static IReadOnlyList<(int R, int C)> Shapes { get; } = [(1, 4), (4, 1), (4, 4)];

    /// <summary>The block shape (rows, columns).</summary>
    public (int R, int C) Block { get; }

    /// <summary>The format for a block shape.</summary>
    public static MatrixFormat FormatOf((int R, int C) block) => block switch
    {
        (1, 4) => MatrixFormat.Bsr1x4,
        (4, 1) => MatrixFormat.Bsr4x1,
        (4, 4) => MatrixFormat.Bsr4x4,
        _ => throw new ArgumentOutOfRangeException(nameof(block), block, $"Block shapes are {string.Join(", ", Shapes.Select(s => $"{s.R}×{s.C}"))}."),
    };

    /// <summary>The block shape of a BSR format.</summary>
    public static (int R, int C) ShapeOf(MatrixFormat format) => format switch
    {
        MatrixFormat.Bsr1x4 => (1, 4),
        MatrixFormat.Bsr4x1 => (4, 1),
        MatrixFormat.Bsr4x4 => (4, 4),
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "Not a block-sparse format."),
    };

    /// <summary>Whether a rows×cols matrix can be stored in <paramref name="block"/>s (rows a multiple of R, columns of C).</summary>
    public static bool Fits(int rows, int cols, (int R, int C) block) => rows % block.R == 0 && cols % block.C == 0;

    /// <summary>Stores every block of row-major <paramref name="dense"/> that holds a non-zero.</summary>
    public static BsrMatrix FromDense(ReadOnlySpan<float> dense, int rows, int cols, (int R, int C) block)
    {
        FormatOf(block);
        CheckDense(dense, rows, cols);
        if (!Fits(rows, cols, block))
            throw new ArgumentException($"A {rows}×{cols} matrix does not split into {block.R}×{block.C} blocks: rows must be a multiple of {block.R} and columns of {block.C}.", nameof(block));
        int blockRows = rows / block.R, blockCols = cols / block.C, size = block.R * block.C;
        var pointers = new int[blockRows + 1];
        var columns = new List<int>();
        var values = new List<float>();
        for (int br = 0; br < blockRows; br++)
        {
            for (int bc = 0; bc < blockCols; bc++)
            {
                bool any = false;
                for (int i = 0; i < block.R && !any; i++)
                    for (int k = 0; k < block.C; k++)
                        if (dense[(br * block.R + i) * cols + bc * block.C + k] != 0) { any = true; break; }
                if (!any) continue;
                columns.Add(bc);
                for (int i = 0; i < block.R; i++)
                    for (int k = 0; k < block.C; k++) values.Add(dense[(br * block.R + i) * cols + bc * block.C + k]);
            }
            pointers[br + 1] = columns.Count;
        }
        bool narrow = blockCols <= CsrMatrix.MaxColumnsForUInt16;
        return new BsrMatrix(rows, cols, block, pointers, narrow ? columns.Select(c => (ushort)c).ToArray() : null, narrow ? null : [.. columns], [.. values]);
    }

    /// <summary>A validated matrix over the loader's own arrays, which it takes over (column indices as int32; narrowed when they fit).</summary>
    internal static BsrMatrix Owning(int rows, int cols, (int R, int C) block, int[] blockRowPointers, int[] columns, float[] values)
    {
        FormatOf(block);
        if (!Fits(rows, cols, block))
            throw new ArgumentException($"A {rows}×{cols} matrix does not split into {block.R}×{block.C} blocks.", nameof(block));
        int blockRows = rows / block.R, blockCols = cols / block.C;
        if (blockRowPointers.Length != blockRows + 1)
            throw new ArgumentException($"Block row pointers must hold {blockRows + 1} entries, got {blockRowPointers.Length}.", nameof(blockRowPointers));
        if (values.Length != (long)columns.Length * block.R * block.C)
            throw new ArgumentException($"{columns.Length} blocks need {(long)columns.Length * block.R * block.C} values, got {values.Length}.", nameof(values));
        if (blockRowPointers[0] != 0 || blockRowPointers[blockRows] != columns.Length)
            throw new ArgumentException($"Block row pointers must run from 0 to the block count {columns.Length}.", nameof(blockRowPointers));
        for (int br = 0; br < blockRows; br++)
        {
            int start = blockRowPointers[br], stop = blockRowPointers[br + 1];
            if (stop < start || stop > columns.Length) throw new ArgumentException($"Block row pointers must not decrease: block row {br} spans [{start}, {stop}).", nameof(blockRowPointers));
            for (int j = start, previous = -1; j < stop; previous = columns[j], j++)
                if (columns[j] <= previous || columns[j] >= blockCols)
                    throw new ArgumentException($"Block column {columns[j]} in block row {br} is out of order or outside [0, {blockCols}).", nameof(columns));
        }
        bool narrow = blockCols <= CsrMatrix.MaxColumnsForUInt16;
        return new BsrMatrix(rows, cols, block, blockRowPointers, narrow ? columns.Select(c => (ushort)c).ToArray() : null, narrow ? null : columns, values);
    }

    /// <inheritdoc />
    public override MatrixFormat Format => FormatOf(Block);

    /// <summary>Stored blocks.</summary>
    public int Blocks => _columns16?.Length ?? _columns32!.Length;

    /// <inheritdoc />
    public override long StoredEntries => _values.Length;

    /// <inheritdoc />
    public override long NonZeros => _nonZeros;

    /// <inheritdoc />
    public override long StoredBytes => _values.Length * sizeof(float) + (long)Blocks * (_columns16 is null ? sizeof(int) : sizeof(ushort)) + _blockRowPointers.Length * sizeof(int);

    /// <summary>Pointers per block row: block row b's blocks are [BlockRowPointers[b], BlockRowPointers[b + 1]).</summary>
    public ReadOnlySpan<int> BlockRowPointers => _blockRowPointers;

    /// <summary>The j-th block's column (in blocks: it covers input features BlockColumnAt(j)·C … + C − 1).</summary>
    public int BlockColumnAt(int j) => _columns16 is not null ? _columns16[j] : _columns32![j];

    /// <summary>The blocks' values, block after block, each R×C row-major.</summary>
    public ReadOnlySpan<float> Values => _values;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal override void ReadRow(int row, Span<float> destination)
    {
        destination[..Cols].Clear();
        int br = row / Block.R, i = row % Block.R;
        for (int j = _blockRowPointers[br]; j < _blockRowPointers[br + 1]; j++)
            for (int k = 0; k < Block.C; k++)
                destination[BlockColumnAt(j) * Block.C + k] = _values[(long)j * Block.R * Block.C + i * Block.C + k];
    }

    internal override unsafe void MultiplyCore(float* x, float* y, float* bias, int batch, int threads, SimdLevel simd)
    {
        int blockRows = Rows / Block.R;
        long work = batch == 1 ? StoredEntries * 2 + Rows : (StoredEntries + Rows) * batch;
        int parts = Parallelism.Chunks(Parallelism.Threads(threads, work, blockRows), blockRows);
        int[] bounds = _split.For(parts);
        nint px = (nint)x, py = (nint)y, pb = (nint)bias;
        fixed (int* rp = _blockRowPointers)
        fixed (float* v = _values)
        fixed (ushort* c16 = _columns16)
        fixed (int* c32 = _columns32)
        {
            nint prp = (nint)rp, pv = (nint)v, pc16 = (nint)c16, pc32 = (nint)c32;
            var block = Block;
            bool narrow = _columns16 is not null;
            Parallelism.Run(bounds, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (first, end) =>
            {
                switch (block)
                {
                    case (1, 4): Run<Block1x4>(); break;
                    case (4, 1): Run<Block4x1>(); break;
                    default: Run<Block4x4>(); break;
                }

                void Run<TShape>() where TShape : struct, IBlockShape
                {
                    if (narrow) Product<TShape, ushort>((int*)prp, (ushort*)pc16, (float*)pv, (float*)px, (float*)py, (float*)pb, batch, simd, first, end);
                    else Product<TShape, int>((int*)prp, (int*)pc32, (float*)pv, (float*)px, (float*)py, (float*)pb, batch, simd, first, end);
                }
            });
        }
    }

    private static unsafe void Product<TShape, TIndex>(int* blockRows, TIndex* columns, float* values, float* x, float* y, float* bias, int batch, SimdLevel simd, int first, int end)
        where TShape : struct, IBlockShape where TIndex : unmanaged
    {
        if (batch == 1) BsrKernels.Spmv<TShape, TIndex>(simd, blockRows, columns, values, x, y, bias, first, end);
        else BsrKernels.Spmm<TShape, TIndex>(simd, blockRows, columns, values, x, y, bias, batch, first, end);
    }
}
