using Pruning.Configuration;

namespace Pruning.Grouping;

/// <summary>Every element is its own group; the selection engine skips the grouping for it.</summary>
internal sealed class ElementGranularity : PruningGranularity
{
    public override ComponentConfig Config { get; } = new("Element");

    public override long GroupCount(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);

    public override void MapGroups(long[] shape, Span<int> groupOfElement)
    {
        for (int i = 0; i < groupOfElement.Length; i++) groupOfElement[i] = i;
    }
}
