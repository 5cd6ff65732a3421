namespace Pruning.Sparse.Kernels;

/// <summary>
/// Row ranges of equal non-zero counts over a sparse matrix's row pointers (<see cref="Parallelism.SplitByNonZeros"/>),
/// cached for the last part count asked for: one immutable object, published whole, so a thread never sees half of it.
/// </summary>
internal sealed class NonZeroSplit(int[] rowPointers)
{
    private Cached? _last;

    private sealed record Cached(int Parts, int[] Bounds);

    /// <summary>Bounds (length <paramref name="parts"/> + 1) for <paramref name="parts"/> parts.</summary>
    public int[] For(int parts)
    {
        if (Volatile.Read(ref _last) is { } cached && cached.Parts == parts) return cached.Bounds;
        int[] bounds = Parallelism.SplitByNonZeros(rowPointers, parts);
        Volatile.Write(ref _last, new Cached(parts, bounds));
        return bounds;
    }
}
