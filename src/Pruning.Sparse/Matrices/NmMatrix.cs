using System.Runtime.CompilerServices;
using Pruning.Sparse.Kernels;

namespace Pruning.Sparse.Matrices;

/// <summary>
/// N:M semi-structured sparsity (2:4 or 4:8): each row's inputs come in groups of M, and every group stores exactly N
/// float32 values (a zero where the group had fewer non-zeros) plus their in-group positions, log2(M) bits each,
/// packed into one byte per group for 2:4 and two for 4:8. No row pointers: 4.5 bytes per stored value for both,
/// against 6 for CSR. What
/// <c>PruningGranularity.NOfM(n, m)</c> trains fits it exactly. Columns must be a multiple of M, and no group may hold
/// more than N non-zeros.
/// </summary>
public sealed class NmMatrix : WeightMatrix
{
    private readonly byte[] _positions;
    private readonly float[] _values;
    private readonly long _nonZeros;

    private NmMatrix(int rows, int cols, int n, int m, byte[] positions, float[] values) : base(rows, cols)
    {
        N = n;
        M = m;
        _positions = positions;
        _values = values;
        foreach (float v in values) if (v != 0) _nonZeros++;
    }

    /// <summary>The (N, M) patterns the kernels run.</summary>
    public static IReadOnlyList<(int N, int M)> Patterns { get; } = [(2, 4), (4, 8)];

    /// <summary>Values stored per group.</summary>
    public int N { get; }

    /// <summary>Inputs per group.</summary>
    public int M { get; }

    private static int Bits(int m) => m == 4 ? 2 : 3;

    /// <summary>Bytes of one group's position word: 1 for 2:4, 2 for 4:8.</summary>
    internal static int WordBytes(int m) => m == 4 ? 1 : 2;

    private static int Word(byte[] positions, long group, int m) =>
        m == 4 ? positions[group] : positions[2 * group] | positions[2 * group + 1] << 8;

    /// <summary>The format of an (N, M) pattern.</summary>
    public static MatrixFormat FormatOf((int N, int M) pattern) => pattern switch
    {
        (2, 4) => MatrixFormat.Nm2of4,
        (4, 8) => MatrixFormat.Nm4of8,
        _ => throw new ArgumentOutOfRangeException(nameof(pattern), pattern, "N:M patterns are 2:4 and 4:8."),
    };

    /// <summary>The (N, M) pattern of an N:M format.</summary>
    public static (int N, int M) PatternOf(MatrixFormat format) => format switch
    {
        MatrixFormat.Nm2of4 => (2, 4),
        MatrixFormat.Nm4of8 => (4, 8),
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "Not an N:M format."),
    };

    /// <summary>Whether a row-major [rows, cols] matrix has columns in whole groups and at most N non-zeros in each.</summary>
    public static bool Fits(ReadOnlySpan<float> dense, int rows, int cols, (int N, int M) pattern)
    {
        if (cols % pattern.M != 0 || dense.Length != (long)rows * cols) return false;
        for (long start = 0; start < dense.Length; start += pattern.M)
        {
            int count = 0;
            foreach (float v in dense.Slice((int)start, pattern.M)) if (v != 0) count++;
            if (count > pattern.N) return false;
        }
        return true;
    }

    /// <summary>Packs row-major <paramref name="dense"/> values whose every group of M inputs holds at most N non-zeros.</summary>
    public static NmMatrix FromDense(ReadOnlySpan<float> dense, int rows, int cols, (int N, int M) pattern)
    {
        FormatOf(pattern);
        CheckDense(dense, rows, cols);
        if (cols % pattern.M != 0)
            throw new ArgumentException($"{cols} columns do not split into groups of {pattern.M}.", nameof(pattern));
        int groups = cols / pattern.M, bits = Bits(pattern.M);
        var positions = new byte[(long)rows * groups * WordBytes(pattern.M)];
        var values = new float[(long)rows * groups * pattern.N];
        for (int r = 0; r < rows; r++)
            for (int g = 0; g < groups; g++)
            {
                int t = 0, word = 0;
                long group = (long)r * groups + g;
                for (int k = 0; k < pattern.M; k++)
                {
                    float v = dense[(int)((long)r * cols + g * pattern.M + k)];
                    if (v == 0) continue;
                    if (t == pattern.N)
                        throw new ArgumentException($"Row {r}, inputs {g * pattern.M}–{g * pattern.M + pattern.M - 1} hold more than {pattern.N} non-zeros: the matrix is not {pattern.N}:{pattern.M} sparse.", nameof(dense));
                    values[group * pattern.N + t] = v;
                    word |= k << (t * bits);
                    t++;
                }
                // Unused slots hold zero at positions no other slot of the group uses, so positions stay distinct.
                for (int k = 0; t < pattern.N && k < pattern.M; k++)
                {
                    bool used = false;
                    for (int u = 0; u < t; u++) used |= ((word >> (u * bits)) & (pattern.M - 1)) == k;
                    if (used) continue;
                    word |= k << (t * bits);
                    t++;
                }
                if (pattern.M == 4) positions[group] = (byte)word;
                else { positions[2 * group] = (byte)word; positions[2 * group + 1] = (byte)(word >> 8); }
            }
        return new NmMatrix(rows, cols, pattern.N, pattern.M, positions, values);
    }

    /// <summary>A validated matrix over the loader's own arrays, which it takes over.</summary>
    internal static NmMatrix Owning(int rows, int cols, (int N, int M) pattern, byte[] positions, float[] values)
    {
        FormatOf(pattern);
        if (cols % pattern.M != 0) throw new ArgumentException($"{cols} columns do not split into groups of {pattern.M}.", nameof(pattern));
        long groups = (long)rows * (cols / pattern.M);
        if (positions.Length != groups * WordBytes(pattern.M)) throw new ArgumentException($"Expected {groups * WordBytes(pattern.M)} position bytes, got {positions.Length}.", nameof(positions));
        if (values.Length != groups * pattern.N) throw new ArgumentException($"Expected {groups * pattern.N} values, got {values.Length}.", nameof(values));
        int bits = Bits(pattern.M), used = pattern.N * bits;
        for (long g = 0; g < groups; g++)
        {
            int word = Word(positions, g, pattern.M), seen = 0;
            if (word >> used != 0)
                throw new ArgumentException($"Group {g}'s position word 0x{word:x4} has bits set beyond its {pattern.N} positions.", nameof(positions));
            for (int t = 0; t < pattern.N; t++)
            {
                int bit = 1 << ((word >> (t * bits)) & (pattern.M - 1));
                if ((seen & bit) != 0) throw new ArgumentException($"Group {g}'s position word 0x{word:x4} names one position twice.", nameof(positions));
                seen |= bit;
            }
        }
        return new NmMatrix(rows, cols, pattern.N, pattern.M, positions, values);
    }

    /// <inheritdoc />
    public override MatrixFormat Format => FormatOf((N, M));

    /// <inheritdoc />
    public override long StoredEntries => _values.Length;

    /// <inheritdoc />
    public override long NonZeros => _nonZeros;

    /// <inheritdoc />
    public override long StoredBytes => _values.Length * sizeof(float) + _positions.Length;

    /// <summary>
    /// One position word per group (row-major over rows and groups), position t in bits [t·b, t·b + b), b = log2(M):
    /// a byte for 2:4, two little-endian bytes for 4:8.
    /// </summary>
    public ReadOnlySpan<byte> Positions => _positions;

    /// <summary>N values per group, in the order of their positions.</summary>
    public ReadOnlySpan<float> Values => _values;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal override void ReadRow(int row, Span<float> destination)
    {
        destination[..Cols].Clear();
        int groups = Cols / M, bits = Bits(M);
        for (int g = 0; g < groups; g++)
        {
            int word = Word(_positions, (long)row * groups + g, M);
            for (int t = 0; t < N; t++)
            {
                float v = _values[((long)row * groups + g) * N + t];
                if (v != 0) destination[g * M + ((word >> (t * bits)) & (M - 1))] = v;
            }
        }
    }

    internal override unsafe void MultiplyCore(float* x, float* y, float* bias, int batch, int threads, SimdLevel simd)
    {
        long work = batch == 1 ? StoredEntries * 8 + Rows : (StoredEntries + Rows) * batch;
        int[] bounds = Parallelism.Even(Rows, threads, work);   // every row costs the same
        nint px = (nint)x, py = (nint)y, pb = (nint)bias;
        int n = N, m = M, groups = Cols / M;
        fixed (byte* positions = _positions)
        fixed (float* values = _values)
        {
            nint pp = (nint)positions, pv = (nint)values;
            Parallelism.Run(bounds, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (first, end) =>
            {
                if (batch == 1) NmKernels.Spmv(simd, n, m, groups, (byte*)pp, (float*)pv, (float*)px, (float*)py, (float*)pb, first, end);
                else NmKernels.Spmm(simd, n, m, groups, (byte*)pp, (float*)pv, (float*)px, (float*)py, (float*)pb, batch, first, end);
            });
        }
    }
}
