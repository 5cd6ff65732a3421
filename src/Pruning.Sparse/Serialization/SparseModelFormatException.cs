namespace Pruning.Sparse.Serialization;

/// <summary>A model file that cannot be loaded: truncated, corrupted, of another version, or describing an invalid model.</summary>
public sealed class SparseModelFormatException : IOException
{
    /// <summary>Creates the exception; the message names <paramref name="source"/> and, when known, the byte offset.</summary>
    public SparseModelFormatException(string source, string problem, long? offset = null, Exception? inner = null)
        : base($"'{source}' is not a valid sparse model file: {problem}{(offset is { } at ? $" (at byte {at})" : "")}.", inner)
    {
        ModelSource = source;
        Offset = offset;
    }

    /// <summary>The file (or stream description) being read.</summary>
    public string ModelSource { get; }

    /// <summary>Where in the file the problem was found, when it is about one place.</summary>
    public long? Offset { get; }
}
