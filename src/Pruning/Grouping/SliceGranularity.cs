using Pruning.Configuration;

namespace Pruning.Grouping;

/// <summary>Output channels (a group per index of the first dimension) or kernels (per index of the first two).</summary>
internal sealed class SliceGranularity(LpNorm norm, int leadingDims) : PruningGranularity(norm)
{
    public override ComponentConfig Config { get; } = new(leadingDims == 1 ? "OutputChannels" : "Kernels", ("norm", norm));

    public override void Validate(string parameterName, long[] shape)
    {
        if (leadingDims == 2 && shape.Length < 3)
            throw new ArgumentException($"Kernel granularity needs a convolution weight [out, in, k…]; '{parameterName}' has shape {Describe(shape)}.", nameof(shape));
    }

    public override long GroupCount(long[] shape) => Math.Max(1, shape.Take(leadingDims).Aggregate(1L, (a, b) => a * b));

    public override void MapGroups(long[] shape, Span<int> groupOfElement)
    {
        long size = shape.Skip(leadingDims).Aggregate(1L, (a, b) => a * b);
        for (int i = 0; i < groupOfElement.Length; i++) groupOfElement[i] = (int)(i / size);
    }
}
