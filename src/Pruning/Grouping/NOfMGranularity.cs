using Pruning.Configuration;

namespace Pruning.Grouping;

/// <summary>N:M: elements are their own groups, budgeted in runs of M along each row.</summary>
internal sealed class NOfMGranularity : PruningGranularity
{
    private readonly int _n, _m;

    public NOfMGranularity(int n, int m)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(m, 2);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(n, m);
        (_n, _m) = (n, m);
        Config = new ComponentConfig("NOfM", ("n", n), ("m", m));
    }

    public override ComponentConfig Config { get; }

    public override int RunLength => _m;

    public override double MaxSparsity => 1 - (double)_n / _m;

    public override void Validate(string parameterName, long[] shape)
    {
        var (_, columns) = View(shape);
        if (columns % _m != 0)
            throw new ArgumentException(
                $"{_n}:{_m} sparsity needs rows whose length is a multiple of {_m}; '{parameterName}' has rows of {columns} (shape {Describe(shape)}).", nameof(shape));
    }

    public override long GroupCount(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);

    public override void MapGroups(long[] shape, Span<int> groupOfElement)
    {
        for (int i = 0; i < groupOfElement.Length; i++) groupOfElement[i] = i;
    }
}
