namespace Pruning.Sparse;

/// <summary>Limits a <see cref="SparseModel"/> keeps to, so that no model, and no file it is loaded from, can make it allocate without bound.</summary>
public sealed class SparseModelOptions
{
    /// <summary>256 MiB: a ResNet-50 at 224×224 needs about 40 MiB at batch 1.</summary>
    public static long DefaultMaxBufferBytes => 256L << 20;

    /// <summary>
    /// The most working memory (the two activation buffers and the largest layer's scratch, such as im2col columns)
    /// one model may allocate, in bytes. A model whose run at batch 1 needs more is refused when it is built or
    /// loaded, before anything is allocated; a batch that needs more is refused by <see cref="SparseModel.Run(ReadOnlySpan{float}, Span{float}, int, int)"/>.
    /// See <see cref="SparseModel.BufferBytes"/> for what a batch needs.
    /// </summary>
    /// <value>The default is <see cref="DefaultMaxBufferBytes"/>.</value>
    public long MaxBufferBytes { get; init; } = DefaultMaxBufferBytes;

    /// <summary>The defaults.</summary>
    public static SparseModelOptions Default { get; } = new();

    internal void Validate()
    {
        if (MaxBufferBytes < 1)
            throw new ArgumentOutOfRangeException("options", MaxBufferBytes, "SparseModelOptions.MaxBufferBytes must be positive.");
    }
}
