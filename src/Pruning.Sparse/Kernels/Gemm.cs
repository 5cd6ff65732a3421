using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Pruning.Sparse.Kernels;

/// <summary>
/// A dense weight matrix packed once for <see cref="Gemm"/>: panels of <see cref="Gemm.RowsPerPanel"/> rows, each
/// stored column by column (the panel's rows side by side for every input), zero rows filling the last panel.
/// </summary>
internal sealed class PackedWeights
{
    public PackedWeights(ReadOnlySpan<float> rowMajor, int rows, int cols)
    {
        if (rowMajor.Length != (long)rows * cols) throw new ArgumentException($"Expected {(long)rows * cols} values, got {rowMajor.Length}.", nameof(rowMajor));
        const int mr = Gemm.RowsPerPanel;
        (Rows, Cols, Panels) = (rows, cols, (rows + mr - 1) / mr);
        Values = new float[(long)Panels * cols * mr];
        for (int r = 0; r < rows; r++)
        {
            long panel = (long)(r / mr) * cols * mr;
            int i = r % mr;
            ReadOnlySpan<float> row = rowMajor.Slice(r * cols, cols);
            for (int k = 0; k < cols; k++) Values[panel + (long)k * mr + i] = row[k];
        }
    }

    public int Rows { get; }
    public int Cols { get; }
    public int Panels { get; }

    /// <summary>[panel][input][row in panel].</summary>
    public float[] Values { get; }
}

/// <summary>
/// The dense matrix product y[M, N] = bias + W[M, K]·x[K, N] of the runtime's layout (features × batch·pixels, row
/// major), blocked for the caches: x is packed in blocks of <see cref="DepthBlock"/> inputs × up to
/// <see cref="ColumnBlock"/> columns into panels <see cref="ColumnsPerPanel"/> wide (the micro-panel stays in L1 while
/// the weights' panels, packed once, stream past it), and a register-blocked micro-kernel computes
/// <see cref="RowsPerPanel"/> rows × two vectors of columns per pass. Column blocks are the unit of work for the
/// threads; each packs only its own columns.
/// </summary>
internal static unsafe class Gemm
{
    /// <summary>
    /// Rows per packed panel. The 512-bit micro-kernel takes a whole panel: 12 rows × 2 vectors is 24 accumulators, two
    /// loads and a broadcast, within AVX-512's 32 registers. The 256-bit one takes half a panel (<see cref="HalfPanel"/>
    /// rows, 12 accumulators within AVX2's 16 registers) twice.
    /// </summary>
    public const int RowsPerPanel = 12;

    /// <summary>Rows of the 256-bit micro-kernel.</summary>
    public const int HalfPanel = 6;

    /// <summary>Inputs per packed block: a 256 × 32 micro-panel of x is 32 KiB, in L1 beside the weights' 6 KiB.</summary>
    public const int DepthBlock = 256;

    /// <summary>Most columns per block (a multiple of every panel width): a 256 × 512 block of x is 512 KiB, in L2.</summary>
    public const int ColumnBlock = 512;

    /// <summary>Fewer columns than this take the row-blocked kernel of <see cref="DenseKernels"/>: packing would not pay.</summary>
    public const int MinColumns = 16;

    /// <summary>Columns per panel at <paramref name="level"/>: two vectors (8 for the scalar path).</summary>
    public static int ColumnsPerPanel(SimdLevel level) => level switch
    {
        SimdLevel.Vector512 => 2 * Vector512<float>.Count,
        SimdLevel.Vector256 => 2 * Vector256<float>.Count,
        _ => 8,
    };

    [ThreadStatic] private static float[]? _packedColumns;

    /// <summary>y[M, n] = bias + W·x[K, n]; x and y rows are <paramref name="n"/> apart.</summary>
    public static void Multiply(SimdLevel level, PackedWeights w, float* x, float* y, float* bias, int n, int threads) =>
        Multiply(level, w, new StoredColumns(x, w.Cols, n), y, bias, threads);

    /// <summary>
    /// Floats of packing buffer one thread needs for an operand of <paramref name="k"/> rows and <paramref name="n"/>
    /// columns: one depth block of one column block, in whole panels of the widest path.
    /// </summary>
    public static long PackingFloats(int k, int n) => (long)Math.Min(DepthBlock, k) * ((Math.Min(n, ColumnBlock) + 31) / 32 * 32);

    /// <summary>
    /// y[M, N] = bias + W·x[K, N] for an operand read block by block (<see cref="ColumnSource"/>); y's rows are N apart.
    /// <paramref name="packing"/>: <see cref="PackingFloats"/> floats for each of <see cref="WorkerPool.Slots"/>
    /// threads, or null for a buffer of each thread's own (one depth block of <see cref="ColumnBlock"/> columns).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Multiply(SimdLevel level, PackedWeights w, ColumnSource x, float* y, float* bias, int threads, float* packing = null)
    {
        if (x.Rows != w.Cols) throw new ArgumentException($"The operand has {x.Rows} rows; the weights have {w.Cols} columns.", nameof(x));
        int n = x.Columns;
        int nr = ColumnsPerPanel(level), columnPanels = (n + nr - 1) / nr;
        // Parts of work for the threads. With columns to spare (at least four panels a part), column blocks: a block's
        // packed columns then serve every row. With few columns (narrow batches, small feature maps), row ranges over
        // as few column blocks as ColumnBlock allows, so the weights are streamed once, shared by the threads, and the
        // (cheaper) packing of the columns is what is repeated.
        int parts = Parallelism.Chunks(Parallelism.Threads(threads, (long)w.Rows * w.Cols * n, columnPanels * w.Panels), columnPanels * w.Panels);
        int width = columnPanels >= 4 * parts || w.Panels == 1
            ? Math.Min(ColumnBlock, Math.Max(1, columnPanels / parts) * nr)
            : Math.Min(ColumnBlock, columnPanels * nr);
        int blocks = (n + width - 1) / width;
        int rowGroups = Math.Clamp((parts + blocks - 1) / blocks, 1, w.Panels);
        nint py = (nint)y, pb = (nint)bias, pp = (nint)packing;
        long slot = PackingFloats(w.Cols, n);
        var tasks = new int[blocks * rowGroups + 1];
        for (int t = 1; t < tasks.Length; t++) tasks[t] = t;
        Parallelism.Run(tasks, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (first, end) =>
        {
            for (int t = first; t < end; t++)
            {
                int block = t % blocks, group = t / blocks;
                int panelFirst = (int)((long)w.Panels * group / rowGroups), panelEnd = (int)((long)w.Panels * (group + 1) / rowGroups);
                Block(level, w, x, (float*)py, (float*)pb, n, block * width, Math.Min(n, (block + 1) * width), panelFirst, panelEnd,
                    pp == 0 ? null : (float*)pp + WorkerPool.Slot * slot);
            }
        });
    }

    /// <summary>Columns [first, end) of y, rows of panels [panelFirst, panelEnd), packing into <paramref name="packing"/> or this thread's own buffer.</summary>
    private static void Block(SimdLevel level, PackedWeights w, ColumnSource x, float* y, float* bias, int n, int first, int end, int panelFirst, int panelEnd, float* packing)
    {
        if (packing != null)
        {
            PackedBlock(level, w, x, y, bias, n, first, end, panelFirst, panelEnd, packing);
            return;
        }
        int needed = DepthBlock * ColumnBlock;
        float[] buffer = _packedColumns ??= new float[needed];
        fixed (float* packed = buffer) PackedBlock(level, w, x, y, bias, n, first, end, panelFirst, panelEnd, packed);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackedBlock(SimdLevel level, PackedWeights w, ColumnSource x, float* y, float* bias, int n, int first, int end, int panelFirst, int panelEnd, float* packed)
    {
        int nr = ColumnsPerPanel(level), columns = end - first, panels = (columns + nr - 1) / nr;
        float* edge = stackalloc float[RowsPerPanel * 32];   // one edge tile: 12 rows × 2 vectors of 16
        fixed (float* a = w.Values)
        {
            for (int k0 = 0; k0 < w.Cols; k0 += DepthBlock)
            {
                int depth = Math.Min(DepthBlock, w.Cols - k0);
                PackColumns(x, k0, depth, first, columns, nr, packed);
                bool accumulate = k0 > 0;
                for (int p = 0; p < panels; p++)
                {
                    int c0 = p * nr, valid = Math.Min(nr, columns - c0);
                    float* bp = packed + (long)p * depth * nr;
                    for (int panel = panelFirst; panel < panelEnd; panel++)
                    {
                        int r0 = panel * RowsPerPanel, rows = Math.Min(RowsPerPanel, w.Rows - r0);
                        float* ap = a + ((long)panel * w.Cols + k0) * RowsPerPanel;
                        float* c = y + (long)r0 * n + first + c0;
                        float* rowBias = bias == null || accumulate ? null : bias + r0;
                        switch (level)
                        {
                            case SimdLevel.Vector512: Tile12(ap, bp, depth, c, n, rows, valid, rowBias, accumulate, edge); break;
                            case SimdLevel.Vector256:
                                Tile<Lanes256, Vector256<float>>(ap, bp, depth, c, n, Math.Min(HalfPanel, rows), valid, rowBias, accumulate, edge);
                                if (rows > HalfPanel)
                                    Tile<Lanes256, Vector256<float>>(ap + HalfPanel, bp, depth, c + (long)HalfPanel * n, n, rows - HalfPanel, valid, rowBias == null ? null : rowBias + HalfPanel, accumulate, edge);
                                break;
                            default: ScalarTile(ap, bp, depth, nr, c, n, rows, valid, rowBias, accumulate, edge); break;
                        }
                    }
                }
            }
        }
    }

    /// <summary>x[k0 .. k0 + depth, first .. first + columns) into panels [panel][input][nr], zero-padded.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackColumns(ColumnSource x, int k0, int depth, int first, int columns, int nr, float* packed)
    {
        for (int c0 = 0; c0 < columns; c0 += nr)
        {
            int valid = Math.Min(nr, columns - c0);
            float* panel = packed + (long)(c0 / nr) * depth * nr;
            x.Copy(k0, depth, first + c0, valid, panel, nr);
            if (valid < nr)
                for (int k = 0; k < depth; k++) new Span<float>(panel + (long)k * nr + valid, nr - valid).Clear();
        }
    }

    /// <summary>
    /// C[rows, valid] (rows <paramref name="ldc"/> apart) = bias + A·B, or += A·B when <paramref name="accumulate"/>:
    /// 6 rows (half a panel: <paramref name="a"/> steps a whole panel per input) × 2 vectors of accumulators over
    /// <paramref name="depth"/> inputs.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile<TL, TVec>(float* a, float* b, int depth, float* c, int ldc, int rows, int valid, float* bias, bool accumulate, float* tile)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        int v = TL.Count;
        TVec c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        TVec c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int k = 0; k < depth; k++, a += RowsPerPanel, b += 2 * v)
        {
            TVec b0 = TL.Load(b), b1 = TL.Load(b + v);
            TVec w = TL.Broadcast(a[0]); c00 = TL.MulAdd(w, b0, c00); c01 = TL.MulAdd(w, b1, c01);
            w = TL.Broadcast(a[1]); c10 = TL.MulAdd(w, b0, c10); c11 = TL.MulAdd(w, b1, c11);
            w = TL.Broadcast(a[2]); c20 = TL.MulAdd(w, b0, c20); c21 = TL.MulAdd(w, b1, c21);
            w = TL.Broadcast(a[3]); c30 = TL.MulAdd(w, b0, c30); c31 = TL.MulAdd(w, b1, c31);
            w = TL.Broadcast(a[4]); c40 = TL.MulAdd(w, b0, c40); c41 = TL.MulAdd(w, b1, c41);
            w = TL.Broadcast(a[5]); c50 = TL.MulAdd(w, b0, c50); c51 = TL.MulAdd(w, b1, c51);
        }
        // A whole tile is stored into C; an edge tile goes through the caller's buffer, then only its valid part.
        bool whole = rows == HalfPanel && valid == 2 * v;
        Put<TL, TVec>(whole, c, ldc, tile, 0, c00, c01, bias, accumulate);
        Put<TL, TVec>(whole, c, ldc, tile, 1, c10, c11, bias, accumulate);
        Put<TL, TVec>(whole, c, ldc, tile, 2, c20, c21, bias, accumulate);
        Put<TL, TVec>(whole, c, ldc, tile, 3, c30, c31, bias, accumulate);
        Put<TL, TVec>(whole, c, ldc, tile, 4, c40, c41, bias, accumulate);
        Put<TL, TVec>(whole, c, ldc, tile, 5, c50, c51, bias, accumulate);
        if (!whole) StoreEdge(tile, 2 * v, c, ldc, rows, valid, bias, accumulate);
    }

    /// <summary>The 512-bit micro-kernel: a whole panel, 12 rows × 2 vectors of 16 columns, as <see cref="Tile{TL, TVec}"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile12(float* a, float* b, int depth, float* c, int ldc, int rows, int valid, float* bias, bool accumulate, float* tile)
    {
        const int v = 16;
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default, c80 = default, c81 = default;
        Vector512<float> c90 = default, c91 = default, ca0 = default, ca1 = default, cb0 = default, cb1 = default;
        for (int k = 0; k < depth; k++, a += RowsPerPanel, b += 2 * v)
        {
            Vector512<float> b0 = Vector512.Load(b), b1 = Vector512.Load(b + v);
            Vector512<float> w = Vector512.Create(a[0]); c00 = Vector512.FusedMultiplyAdd(w, b0, c00); c01 = Vector512.FusedMultiplyAdd(w, b1, c01);
            w = Vector512.Create(a[1]); c10 = Vector512.FusedMultiplyAdd(w, b0, c10); c11 = Vector512.FusedMultiplyAdd(w, b1, c11);
            w = Vector512.Create(a[2]); c20 = Vector512.FusedMultiplyAdd(w, b0, c20); c21 = Vector512.FusedMultiplyAdd(w, b1, c21);
            w = Vector512.Create(a[3]); c30 = Vector512.FusedMultiplyAdd(w, b0, c30); c31 = Vector512.FusedMultiplyAdd(w, b1, c31);
            w = Vector512.Create(a[4]); c40 = Vector512.FusedMultiplyAdd(w, b0, c40); c41 = Vector512.FusedMultiplyAdd(w, b1, c41);
            w = Vector512.Create(a[5]); c50 = Vector512.FusedMultiplyAdd(w, b0, c50); c51 = Vector512.FusedMultiplyAdd(w, b1, c51);
            w = Vector512.Create(a[6]); c60 = Vector512.FusedMultiplyAdd(w, b0, c60); c61 = Vector512.FusedMultiplyAdd(w, b1, c61);
            w = Vector512.Create(a[7]); c70 = Vector512.FusedMultiplyAdd(w, b0, c70); c71 = Vector512.FusedMultiplyAdd(w, b1, c71);
            w = Vector512.Create(a[8]); c80 = Vector512.FusedMultiplyAdd(w, b0, c80); c81 = Vector512.FusedMultiplyAdd(w, b1, c81);
            w = Vector512.Create(a[9]); c90 = Vector512.FusedMultiplyAdd(w, b0, c90); c91 = Vector512.FusedMultiplyAdd(w, b1, c91);
            w = Vector512.Create(a[10]); ca0 = Vector512.FusedMultiplyAdd(w, b0, ca0); ca1 = Vector512.FusedMultiplyAdd(w, b1, ca1);
            w = Vector512.Create(a[11]); cb0 = Vector512.FusedMultiplyAdd(w, b0, cb0); cb1 = Vector512.FusedMultiplyAdd(w, b1, cb1);
        }
        bool whole = rows == RowsPerPanel && valid == 2 * v;
        Put<Lanes512, Vector512<float>>(whole, c, ldc, tile, 0, c00, c01, bias, accumulate);
        Put<Lanes512, Vector512<float>>(whole, c, ldc, tile, 1, c10, c11, bias, accumulate);
        Put<Lanes512, Vector512<float>>(whole, c, ldc, tile, 2, c20, c21, bias, accumulate);
        Put<Lanes512, Vector512<float>>(whole, c, ldc, tile, 3, c30, c31, bias, accumulate);
        Put<Lanes512, Vector512<float>>(whole, c, ldc, tile, 4, c40, c41, bias, accumulate);
        Put<Lanes512, Vector512<float>>(whole, c, ldc, tile, 5, c50, c51, bias, accumulate);
        Put<Lanes512, Vector512<float>>(whole, c, ldc, tile, 6, c60, c61, bias, accumulate);
        Put<Lanes512, Vector512<float>>(whole, c, ldc, tile, 7, c70, c71, bias, accumulate);
        Put<Lanes512, Vector512<float>>(whole, c, ldc, tile, 8, c80, c81, bias, accumulate);
        Put<Lanes512, Vector512<float>>(whole, c, ldc, tile, 9, c90, c91, bias, accumulate);
        Put<Lanes512, Vector512<float>>(whole, c, ldc, tile, 10, ca0, ca1, bias, accumulate);
        Put<Lanes512, Vector512<float>>(whole, c, ldc, tile, 11, cb0, cb1, bias, accumulate);
        if (!whole) StoreEdge(tile, 2 * v, c, ldc, rows, valid, bias, accumulate);
    }

    /// <summary>
    /// Row <paramref name="row"/> of a tile (two vectors): into C (bias added, or accumulated) when the tile is
    /// <paramref name="whole"/>, otherwise into the edge buffer <paramref name="tile"/> for <see cref="StoreEdge"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put<TL, TVec>(bool whole, float* c, int ldc, float* tile, int row, TVec low, TVec high, float* bias, bool accumulate)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        int v = TL.Count;
        if (!whole)
        {
            TL.Store(tile + 2 * row * v, low);
            TL.Store(tile + (2 * row + 1) * v, high);
            return;
        }
        c += (long)row * ldc;
        if (accumulate)
        {
            TL.Store(c, TL.Add(TL.Load(c), low));
            TL.Store(c + v, TL.Add(TL.Load(c + v), high));
        }
        else
        {
            TVec start = TL.Broadcast(bias == null ? 0 : bias[row]);
            TL.Store(c, TL.Add(start, low));
            TL.Store(c + v, TL.Add(start, high));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void StoreEdge(float* tile, int width, float* c, int ldc, int rows, int valid, float* bias, bool accumulate)
    {
        for (int i = 0; i < rows; i++)
        {
            float* target = c + (long)i * ldc;
            float start = bias == null ? 0 : bias[i];
            for (int j = 0; j < valid; j++) target[j] = accumulate ? target[j] + tile[i * width + j] : start + tile[i * width + j];
        }
    }

    /// <summary>The scalar reference of <see cref="Tile{TL, TVec}"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScalarTile(float* a, float* b, int depth, int nr, float* c, int ldc, int rows, int valid, float* bias, bool accumulate, float* tile)
    {
        new Span<float>(tile, RowsPerPanel * nr).Clear();
        for (int k = 0; k < depth; k++, a += RowsPerPanel, b += nr)
            for (int i = 0; i < RowsPerPanel; i++)
                for (int j = 0; j < nr; j++) tile[i * nr + j] += a[i] * b[j];
        StoreEdge(tile, nr, c, ldc, rows, valid, bias, accumulate);
    }
}
