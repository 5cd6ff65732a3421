namespace Pruning.Sparse.Tuning;

/// <summary>One weighted layer's measured options and the one kept.</summary>
/// <param name="Index">The layer's position in the model (for a layer inside a residual, concatenation or scaling layer, that layer's position; <see cref="Where"/> says where inside).</param>
/// <param name="Options">Each candidate's description and median time in milliseconds.</param>
/// <param name="Chosen">The kept candidate's description.</param>
public sealed record LayerFormatChoice(int Index, IReadOnlyList<(string Layer, double Milliseconds)> Options, string Chosen)
{
    /// <summary>The layer's path: its position, then for a layer inside a branching layer the branch and the position in it (e.g. <c>4.main.2</c>).</summary>
    public string Where { get; init; } = Index.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
