using Pruning.Grouping;
using Pruning.Selection;

namespace Pruning.Reconstruction;

/// <summary>
/// A weight's 2-D view [rows, columns] cut into rectangular windows that each hold whole groups of a granularity, so
/// that a tensor's exact pruned count can be split across windows (OBS's column blocks, Wanda's rows) and each window
/// selected by the engine on its own. Counts are shared out in proportion to the windows' groups, by cumulative
/// rounding, so they add up to exactly what <see cref="MaskSelector"/> would prune for the whole tensor.
/// </summary>
internal sealed class WeightWindows
{
    private readonly int[] _groupOf;
    private readonly int[] _firstColumn, _lastColumn, _firstRow, _lastRow;

    public WeightWindows(string name, long[] shape, PruningGranularity granularity)
    {
        Name = name;
        Shape = shape;
        Granularity = granularity;
        Rows = (int)shape[0];
        Columns = (int)(shape.Skip(1).Aggregate(1L, (a, b) => a * b));
        Trailing = (int)shape.Skip(2).Aggregate(1L, (a, b) => a * b);
        Groups = granularity.GroupCount(shape);
        int n = checked(Rows * Columns);
        _groupOf = new int[n];
        granularity.MapGroups(shape, _groupOf);
        _firstColumn = new int[Groups];
        _lastColumn = new int[Groups];
        _firstRow = new int[Groups];
        _lastRow = new int[Groups];
        Array.Fill(_firstColumn, int.MaxValue);
        Array.Fill(_firstRow, int.MaxValue);
        for (int i = 0; i < n; i++)
        {
            int g = _groupOf[i];
            if ((uint)g >= (ulong)Groups)
                throw new ArgumentException($"{granularity} maps element {i} of '{name}' to group {g}, outside [0, {Groups}).");
            int r = i / Columns, c = i % Columns;
            _firstColumn[g] = Math.Min(_firstColumn[g], c);
            _lastColumn[g] = Math.Max(_lastColumn[g], c);
            _firstRow[g] = Math.Min(_firstRow[g], r);
            _lastRow[g] = Math.Max(_lastRow[g], r);
        }
        if (granularity.RunLength > 0 && Groups != n)
            throw new NotSupportedException($"{granularity} budgets runs of groups larger than one weight; reconstruction supports run granularities of single weights (N:M) only.");
    }

    public string Name { get; }

    public long[] Shape { get; }

    public PruningGranularity Granularity { get; }

    public int Rows { get; }

    public int Columns { get; }

    /// <summary>Elements per input channel of a Conv weight (kh·kw), 1 for a Linear.</summary>
    public int Trailing { get; }

    public long Groups { get; }

    /// <summary>Whether every group lies within one row, so rows can be selected on their own (Wanda's comparison groups).</summary>
    public bool GroupsWithinRows => Enumerable.Range(0, (int)Groups).All(g => _firstRow[g] == _lastRow[g]);

    /// <summary>
    /// Column boundaries [0, b1, …, columns] about <paramref name="blockSize"/> apart, each at a column no group spans,
    /// at a whole input channel of a Conv, and at a whole run of an N:M granularity.
    /// </summary>
    public int[] ColumnBlocks(int blockSize)
    {
        var cut = new int[Columns + 2]; // cut[c] > 0: some group spans the boundary before column c
        for (int g = 0; g < Groups; g++)
            if (_lastColumn[g] > _firstColumn[g])
            {
                cut[_firstColumn[g] + 1]++;
                cut[_lastColumn[g] + 1]--;
            }
        var valid = new bool[Columns + 1];
        int open = 0;
        for (int c = 0; c <= Columns; c++)
        {
            open += cut[c];
            valid[c] = c == Columns || (open == 0 && c % Trailing == 0 && (Granularity.RunLength == 0 || c % Granularity.RunLength == 0));
        }
        var bounds = new List<int> { 0 };
        while (bounds[^1] < Columns)
        {
            int next = Math.Min(bounds[^1] + Math.Max(blockSize, 1), Columns);
            while (!valid[next]) next++;
            bounds.Add(next);
        }
        return bounds.ToArray();
    }

    /// <summary>How many groups lie in the window (rows [r0, r1), columns [c0, c1)); windows must hold whole groups.</summary>
    public long GroupsIn(int r0, int r1, int c0, int c1)
    {
        if (Granularity is ElementGranularity) return (long)(r1 - r0) * (c1 - c0);
        var seen = new HashSet<int>();
        for (int r = r0; r < r1; r++)
            for (int c = c0; c < c1; c++) seen.Add(_groupOf[r * Columns + c]);
        return seen.Count;
    }

    /// <summary>How many groups of columns [c0, c1) (all rows) <paramref name="keep"/> prunes.</summary>
    public long PrunedGroupsIn(bool[] keep, int c0, int c1)
    {
        if (Granularity is ElementGranularity)
        {
            long pruned = 0;
            for (int r = 0; r < Rows; r++)
                for (int c = c0; c < c1; c++) pruned += keep[r * Columns + c] ? 0 : 1;
            return pruned;
        }
        var seen = new HashSet<int>();
        for (int r = 0; r < Rows; r++)
            for (int c = c0; c < c1; c++)
                if (!keep[r * Columns + c]) seen.Add(_groupOf[r * Columns + c]);
        return seen.Count;
    }

    /// <summary>Splits <paramref name="total"/> pruned groups across windows holding <paramref name="groups"/> groups each, in proportion, by cumulative rounding.</summary>
    public static long[] Share(long total, IReadOnlyList<long> groups)
    {
        long all = groups.Sum();
        var shares = new long[groups.Count];
        long before = 0, done = 0;
        for (int w = 0; w < groups.Count; w++)
        {
            before += groups[w];
            long upTo = all == 0 ? 0 : (long)Math.Round((double)total * before / all, MidpointRounding.ToEven);
            shares[w] = upTo - done;
            done = upTo;
        }
        return shares;
    }

    /// <summary>
    /// Selects exactly <paramref name="prune"/> groups of one window by the engine: <paramref name="scores"/> and the
    /// result are the window's elements, row-major.
    /// </summary>
    public void Select(int r0, int r1, int c0, int c1, float[] scores, long prune, ReadOnlyMemory<bool> previousKeep, bool[] keep)
    {
        int width = c1 - c0, height = r1 - r0;
        long[] shape = Shape.Length >= 3
            ? [height, width / Trailing, .. Shape.Skip(2)]
            : [height, width];
        bool[]? previous = null;
        if (!previousKeep.IsEmpty)
        {
            previous = new bool[height * width];
            ReadOnlySpan<bool> all = previousKeep.Span;
            for (int r = 0; r < height; r++) all.Slice((r0 + r) * Columns + c0, width).CopyTo(previous.AsSpan(r * width, width));
        }
        CheckSamePartition(r0, c0, shape, height, width);
        MaskSelector.SelectExactly(new SelectionLayer(Name, scores, shape) { PreviousKeep = previous }, Granularity, prune, keep);
    }

    /// <summary>The granularity must group the window's elements as it groups them in the whole tensor.</summary>
    private void CheckSamePartition(int r0, int c0, long[] shape, int height, int width)
    {
        if (Granularity is ElementGranularity || Granularity.RunLength > 0) return;
        var local = new int[height * width];
        Granularity.MapGroups(shape, local);
        var toWhole = new Dictionary<int, int>();
        var toLocal = new Dictionary<int, int>();
        for (int r = 0; r < height; r++)
            for (int c = 0; c < width; c++)
            {
                int l = local[r * width + c], g = _groupOf[(r0 + r) * Columns + c0 + c];
                if (toWhole.GetValueOrDefault(l, g) != g || toLocal.GetValueOrDefault(g, l) != l)
                    throw new NotSupportedException($"{Granularity} does not group a part of '{Name}' as it groups the whole; reconstruction cannot select it in parts.");
                toWhole[l] = g;
                toLocal[g] = l;
            }
    }
}
