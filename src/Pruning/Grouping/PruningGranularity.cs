using Pruning.Configuration;

namespace Pruning.Grouping;

/// <summary>
/// Which elements are pruned together: single weights, whole output channels, conv kernels, blocks, or N of every M
/// consecutive weights. Criteria score elements; a granularity says which elements form a group, and the selection
/// engine (<see cref="Selection.MaskSelector"/>) scores each group by the <see cref="Norm"/> of its elements' scores
/// and keeps or prunes whole groups, so every criterion works with every granularity.
/// </summary>
/// <remarks>
/// <para>
/// Weights are seen as a 2-D matrix [shape[0], rest]: rows are output features of a Linear, filters of a Conv, gates
/// of an LSTM matrix. The target counts groups: round(s · groups) groups are pruned and at least one survives. Among
/// equal group scores, groups that are already pruned go first, then the lower group index, so ties never revive a
/// pruned group. Under a global scope the groups of all tensors share one ranking (network slimming's global γ
/// threshold); group scores are not normalized by group size, so compare like with like (e.g. |γ|, or L∞ norms).
/// </para>
/// <para>
/// To write your own, derive from this class: say how many groups a shape has (<see cref="GroupCount"/>) and which
/// group each element belongs to (<see cref="MapGroups"/>); give runs of groups their own budgets with
/// <see cref="RunLength"/> (as N:M does), and describe the granularity by value in <see cref="Config"/>.
/// </para>
/// </remarks>
public abstract class PruningGranularity
{
    /// <summary>Creates a granularity whose group score is the <paramref name="norm"/> of its element scores.</summary>
    protected PruningGranularity(LpNorm norm = LpNorm.L1)
    {
        if (!Enum.IsDefined(norm)) throw new ArgumentOutOfRangeException(nameof(norm), norm, "Unknown group norm.");
        Norm = norm;
    }

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

    /// <summary>How the element scores of a group become the group's score.</summary>
    public LpNorm Norm { get; }

    /// <summary>
    /// 0 when a tensor's groups share one budget. A positive r splits the groups into consecutive runs of r, each
    /// with its own budget of round(s·r) groups (N:M). Such a granularity cannot share a global ranking.
    /// </summary>
    public virtual int RunLength => 0;

    /// <summary>The largest fraction of groups (per run, when <see cref="RunLength"/> is set) this granularity may prune; 1 when it sets no cap.</summary>
    public virtual double MaxSparsity => 1;

    /// <summary>The granularity's value identity; two granularities that group alike have equal configs.</summary>
    public abstract ComponentConfig Config { get; }

    /// <summary>
    /// Checks that a tensor of <paramref name="shape"/> can be grouped. Throw an <see cref="ArgumentException"/> whose
    /// message names <paramref name="parameterName"/> and the shape.
    /// </summary>
    /// <param name="parameterName">The parameter's name, for the message.</param>
    /// <param name="shape">The tensor's shape.</param>
    public virtual void Validate(string parameterName, long[] shape) { }

    /// <summary>How many groups a tensor of <paramref name="shape"/> has (at least one).</summary>
    public abstract long GroupCount(long[] shape);

    /// <summary>Writes the group of every element (row-major order), each in [0, <see cref="GroupCount"/>).</summary>
    /// <param name="shape">The tensor's shape (already validated).</param>
    /// <param name="groupOfElement">One entry per element.</param>
    public abstract void MapGroups(long[] shape, Span<int> groupOfElement);

    /// <inheritdoc />
    public override string ToString() => Config.ToString();

    /// <summary>[shape[0], product of the rest].</summary>
    protected static (long Rows, long Columns) View(long[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        return shape.Length == 0 ? (1, 1) : (shape[0], shape.Skip(1).Aggregate(1L, (a, b) => a * b));
    }

    /// <summary>"[a, b, c]", for messages.</summary>
    protected static string Describe(long[] shape) => $"[{string.Join(", ", shape)}]";
}
