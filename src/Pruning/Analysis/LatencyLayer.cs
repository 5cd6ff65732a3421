namespace Pruning.Analysis;

/// <summary>A layer of a <see cref="LatencyTable"/> as the model has it.</summary>
/// <param name="Name">The layer's weight name, e.g. <c>fc1.weight</c>.</param>
/// <param name="InChannels">Input channels (or features) of the unpruned layer.</param>
/// <param name="OutChannels">Output channels (or features) of the unpruned layer.</param>
public sealed record LatencyLayer(string Name, long InChannels, long OutChannels)
{
    /// <summary>The unpruned layer at <paramref name="sparsity"/>.</summary>
    public LayerVariant At(double sparsity) => new(Name, InChannels, OutChannels, sparsity);
}
