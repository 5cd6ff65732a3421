namespace Pruning.Analysis;

/// <summary>
/// One way a layer can be pruned, the key of a <see cref="LatencyTable"/>: its input and output channels (features
/// for a Linear) after channel removal, and the sparsity of its weight.
/// </summary>
/// <param name="Layer">The layer's weight name, e.g. <c>fc1.weight</c>.</param>
/// <param name="InChannels">Input channels (or features).</param>
/// <param name="OutChannels">Output channels (or features).</param>
/// <param name="Sparsity">Fraction of the weight's entries that are zero, in [0, 1).</param>
public readonly record struct LayerVariant(string Layer, long InChannels, long OutChannels, double Sparsity);
