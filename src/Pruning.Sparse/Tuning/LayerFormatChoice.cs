namespace Pruning.Sparse.Tuning;

/// <summary>One weighted layer's measured options and the one kept.</summary>
/// <param name="Index">The layer's position in the model.</param>
/// <param name="Options">Each candidate's description and median time in milliseconds.</param>
/// <param name="Chosen">The kept candidate's description.</param>
public sealed record LayerFormatChoice(int Index, IReadOnlyList<(string Layer, double Milliseconds)> Options, string Chosen);
