using Pruning.Configuration;

namespace Pruning.Grouping;

/// <summary>Rectangular blocks of the 2-D view, numbered row-major.</summary>
internal sealed class BlockGranularity : PruningGranularity
{
    private readonly int _rows, _columns;

    public BlockGranularity(int rows, int columns, LpNorm norm) : base(norm)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(columns);
        (_rows, _columns) = (rows, columns);
        Config = new ComponentConfig("Blocks", ("rows", rows), ("columns", columns), ("norm", norm));
    }

    public override ComponentConfig Config { get; }

    public override void Validate(string parameterName, long[] shape)
    {
        var (rows, columns) = View(shape);
        if (rows % _rows != 0 || columns % _columns != 0)
            throw new ArgumentException(
                $"{_rows}x{_columns} blocks do not tile '{parameterName}': its 2-D view is {rows}x{columns} (shape {Describe(shape)}).", nameof(shape));
    }

    public override long GroupCount(long[] shape)
    {
        var (rows, columns) = View(shape);
        return rows / _rows * (columns / _columns);
    }

    public override void MapGroups(long[] shape, Span<int> groupOfElement)
    {
        var (_, columns) = View(shape);
        long blocksPerRow = columns / _columns;
        for (int i = 0; i < groupOfElement.Length; i++)
            groupOfElement[i] = (int)(i / columns / _rows * blocksPerRow + i % columns / _columns);
    }
}
