namespace Pruning.Selection;

/// <summary>What the selection engine chose for one tensor.</summary>
/// <param name="Name">The tensor's name.</param>
/// <param name="Keep">One flag per element, row-major: true = kept, false = pruned.</param>
/// <param name="Target">The target this tensor was selected at: its own, clamped into its bounds (layer-wise), or the
/// model-wide one (global).</param>
/// <param name="PrunedCount">How many elements are pruned.</param>
public sealed record MaskSelection(string Name, bool[] Keep, double Target, long PrunedCount)
{
    /// <summary>PrunedCount / elements.</summary>
    public double Sparsity => Keep.Length == 0 ? 0 : (double)PrunedCount / Keep.Length;
}
