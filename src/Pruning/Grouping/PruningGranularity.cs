using Pruning.Selection;

namespace Pruning.Grouping;

/// <summary>How a norm turns the element scores of a group into one group score.</summary>
public enum LpNorm
{
    /// <summary>Σ|s| (Li et al. 2017 rank filters by the L1 norm of their weights).</summary>
    L1,

    /// <summary>√Σs².</summary>
    L2,

    /// <summary>max |s|.</summary>
    LInfinity,
}

/// <summary>
/// Which elements are pruned together: single weights, whole output channels, conv kernels, blocks, or N of every M
/// consecutive weights. Criteria score elements; a granularity groups those scores and decides which groups go, so
/// every criterion works with every granularity.
/// </summary>
/// <remarks>
/// Weights are seen as a 2-D matrix [shape[0], rest]: rows are output features of a Linear, filters of a Conv, gates
/// of an LSTM matrix. Under a group granularity the target counts groups: round(s · groups) groups are pruned, at
/// least one survives, and ties go to the lower group index, so the element sparsity is exact whenever groups are
/// equal in size (they are, within a tensor, for every granularity here). Under a global scope the groups of all
/// tensors share one ranking and the target counts groups across them (network slimming's global γ threshold);
/// group scores are not normalized by group size, so compare like with like (e.g. |γ|, or L∞ norms).
/// </remarks>
public abstract class PruningGranularity
{
    /// <summary>Single weights (unstructured): the best accuracy for a given sparsity, no speed-up on dense hardware.</summary>
    public static PruningGranularity Element { get; } = new ElementGranularity();

    /// <summary>Whole rows of the 2-D view: a Linear's output neurons, a Conv's filters (output channels).</summary>
    /// <param name="norm">How element scores add up to a row score.</param>
    public static PruningGranularity OutputChannels(LpNorm norm = LpNorm.L1) => new SliceGranularity(norm, leadingDims: 1);

    /// <summary>Whole kernels of a Conv weight [out, in, k…]: one group per (out, in) pair.</summary>
    /// <param name="norm">How element scores add up to a kernel score.</param>
    public static PruningGranularity Kernels(LpNorm norm = LpNorm.L1) => new SliceGranularity(norm, leadingDims: 2);

    /// <summary>Rectangular blocks of the 2-D view, e.g. 1×4 or 4×4; both sides must divide the view's.</summary>
    /// <param name="rows">Block height (&gt; 0).</param>
    /// <param name="columns">Block width (&gt; 0).</param>
    /// <param name="norm">How element scores add up to a block score.</param>
    public static PruningGranularity Blocks(int rows, int columns, LpNorm norm = LpNorm.L1) => new BlockGranularity(rows, columns, norm);

    /// <summary>
    /// N:M: in every run of M consecutive weights along a row (the input dimension), at most M − N are pruned, so the
    /// final sparsity is exactly 1 − N/M (2:4 gives 50 %). While the schedule ramps up, round(s·M) of each run are
    /// pruned, capped at M − N.
    /// </summary>
    /// <param name="n">Weights kept per run (&gt; 0, &lt; m).</param>
    /// <param name="m">Run length (&gt; 1).</param>
    public static PruningGranularity NOfM(int n, int m) => new NOfMGranularity(n, m);

    /// <summary>Whether groups of different tensors can share one ranking (N:M runs cannot: each run is its own budget).</summary>
    internal virtual bool SupportsGlobal => false;

    /// <summary>The largest sparsity this granularity can reach, if it caps it (N:M does).</summary>
    internal virtual double? MaxSparsity => null;

    /// <summary>Checks that a parameter of this shape can be grouped; the message names the parameter.</summary>
    /// <exception cref="ArgumentException">The shape does not fit.</exception>
    internal abstract void Validate(string parameterName, long[] shape);

    /// <summary>Sets pruned[i] = 1 for the elements to prune at <paramref name="sparsity"/> (others 0).</summary>
    internal abstract void Select(ReadOnlySpan<float> scores, long[] shape, double sparsity, byte[] pruned);

    /// <summary>[shape[0], product of the rest].</summary>
    private protected static (long Rows, long Columns) View(long[] shape) =>
        shape.Length == 0 ? (1, 1) : (shape[0], shape.Skip(1).Aggregate(1L, (a, b) => a * b));

    /// <summary>round(s · n), capped at n − 1 so that one survives.</summary>
    private protected static long Count(double sparsity, long n) => Math.Min(GradualPruner.PrunedCount(sparsity, n), Math.Max(n - 1, 0));
}

internal sealed class ElementGranularity : PruningGranularity
{
    internal override bool SupportsGlobal => true;

    internal override void Validate(string parameterName, long[] shape) { }

    internal override void Select(ReadOnlySpan<float> scores, long[] shape, double sparsity, byte[] pruned)
    {
        float[] copy = scores.ToArray();
        SmallestSelector.Select([copy], Count(sparsity, copy.Length), [pruned]);
    }

    public override string ToString() => "Element";
}

/// <summary>Groups that are equal-size, contiguous runs in row-major order, scored by a norm.</summary>
internal abstract class GroupGranularity(LpNorm norm) : PruningGranularity
{
    protected LpNorm Norm { get; } = Enum.IsDefined(norm) ? norm : throw new ArgumentOutOfRangeException(nameof(norm), norm, "Unknown group norm.");

    /// <summary>The group of each element, as (group count, group of element i).</summary>
    protected abstract (long Groups, Func<long, long> GroupOf) Layout(long[] shape);

    internal override bool SupportsGlobal => true;

    internal override void Select(ReadOnlySpan<float> scores, long[] shape, double sparsity, byte[] pruned)
    {
        float[] groupScores = GroupScores(scores, shape);
        var groupPruned = new byte[groupScores.Length];
        SmallestSelector.Select([groupScores], Count(sparsity, groupScores.Length), [groupPruned]);
        Expand(groupPruned, shape, pruned);
    }

    /// <summary>One score per group: the norm of its elements' scores (Σs² stands for L2: √ is monotonic).</summary>
    internal float[] GroupScores(ReadOnlySpan<float> scores, long[] shape)
    {
        var (groups, groupOf) = Layout(shape);
        var groupScores = new float[groups];
        for (int i = 0; i < scores.Length; i++)
        {
            long g = groupOf(i);
            float s = Math.Abs(scores[i]);
            groupScores[g] = Norm switch
            {
                LpNorm.L1 => groupScores[g] + s,
                LpNorm.L2 => groupScores[g] + s * s,
                _ => Math.Max(groupScores[g], s),
            };
        }
        return groupScores;
    }

    /// <summary>Marks every element of each pruned group.</summary>
    internal void Expand(byte[] groupPruned, long[] shape, byte[] pruned)
    {
        var (_, groupOf) = Layout(shape);
        for (int i = 0; i < pruned.Length; i++)
            pruned[i] = groupPruned[groupOf(i)];
    }
}

/// <summary>Output channels (the first dimension) or kernels (the first two).</summary>
internal sealed class SliceGranularity(LpNorm norm, int leadingDims) : GroupGranularity(norm)
{
    internal override void Validate(string parameterName, long[] shape)
    {
        if (leadingDims == 2 && shape.Length < 3)
            throw new ArgumentException($"Kernel granularity needs a convolution weight [out, in, k…]; '{parameterName}' has shape [{string.Join(", ", shape)}].", "options");
    }

    protected override (long Groups, Func<long, long> GroupOf) Layout(long[] shape)
    {
        long groups = shape.Take(leadingDims).Aggregate(1L, (a, b) => a * b);
        long size = shape.Skip(leadingDims).Aggregate(1L, (a, b) => a * b);
        return (groups, i => i / size);
    }

    public override string ToString() => $"{(leadingDims == 1 ? "OutputChannels" : "Kernels")}({Norm})";
}

internal sealed class BlockGranularity : GroupGranularity
{
    private readonly int _rows, _columns;

    public BlockGranularity(int rows, int columns, LpNorm norm) : base(norm)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(columns);
        (_rows, _columns) = (rows, columns);
    }

    internal override void Validate(string parameterName, long[] shape)
    {
        var (rows, columns) = View(shape);
        if (rows % _rows != 0 || columns % _columns != 0)
            throw new ArgumentException(
                $"{_rows}x{_columns} blocks do not tile '{parameterName}': its 2-D view is {rows}x{columns} (shape [{string.Join(", ", shape)}]).", "options");
    }

    protected override (long Groups, Func<long, long> GroupOf) Layout(long[] shape)
    {
        var (rows, columns) = View(shape);
        long blocksPerRow = columns / _columns;
        return (rows / _rows * blocksPerRow, i => i / columns / _rows * blocksPerRow + i % columns / _columns);
    }

    public override string ToString() => $"Blocks({_rows}x{_columns}, {Norm})";
}

internal sealed class NOfMGranularity : PruningGranularity
{
    private readonly int _n, _m;

    public NOfMGranularity(int n, int m)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(m, 2);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(n, m);
        (_n, _m) = (n, m);
    }

    internal override double? MaxSparsity => 1 - (double)_n / _m;

    internal override void Validate(string parameterName, long[] shape)
    {
        var (_, columns) = View(shape);
        if (columns % _m != 0)
            throw new ArgumentException(
                $"{_n}:{_m} sparsity needs rows whose length is a multiple of {_m}; '{parameterName}' has rows of {columns} (shape [{string.Join(", ", shape)}]).", "options");
    }

    internal override void Select(ReadOnlySpan<float> scores, long[] shape, double sparsity, byte[] pruned)
    {
        int prune = (int)Math.Min(GradualPruner.PrunedCount(sparsity, _m), _m - _n);
        Span<int> order = stackalloc int[_m];
        for (int start = 0; start < scores.Length; start += _m)
        {
            ReadOnlySpan<float> run = scores.Slice(start, _m);
            for (int j = 0; j < _m; j++) order[j] = j;
            // Insertion sort by (score, index): M is small, and ties go to the lower index.
            for (int j = 1; j < _m; j++)
                for (int t = j; t > 0 && run[order[t]] < run[order[t - 1]]; t--)
                    (order[t], order[t - 1]) = (order[t - 1], order[t]);
            for (int j = 0; j < _m; j++)
                pruned[start + order[j]] = j < prune ? (byte)1 : (byte)0;
        }
    }

    public override string ToString() => $"NOfM({_n}:{_m})";
}
