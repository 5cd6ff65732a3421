namespace Pruning.Sparse.Sequences;

/// <summary>
/// The keys and values a <see cref="TransformerModel"/> has computed for <see cref="Batch"/> sequences, so that the next
/// tokens attend to them without recomputing them: what generation carries from step to step. All sequences of a batch
/// advance together; <see cref="Length"/> positions are filled, at most <see cref="Capacity"/> (the model's context).
/// </summary>
public sealed class AttentionCache
{
    private readonly float[][] _keys, _values;

    internal AttentionCache(int layers, int batch, int heads, int headSize, int capacity)
    {
        Batch = batch;
        Layers = layers;
        Heads = heads;
        HeadSize = headSize;
        Capacity = capacity;
        long size = (long)batch * heads * capacity * headSize;
        if (size > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, $"A cache for {batch} sequences of {capacity} positions needs more than {Array.MaxLength} values per layer; run fewer sequences.");
        _keys = new float[layers][];
        _values = new float[layers][];
        for (int l = 0; l < layers; l++)
        {
            _keys[l] = new float[size];
            _values[l] = new float[size];
        }
    }

    /// <summary>Sequences.</summary>
    public int Batch { get; }

    /// <summary>Positions filled so far: the next token is at this position.</summary>
    public int Length { get; internal set; }

    /// <summary>Positions it can hold: the model's context.</summary>
    public int Capacity { get; }

    internal int Layers { get; }

    internal int Heads { get; }

    internal int HeadSize { get; }

    /// <summary>Forgets every position: the next run starts new sequences.</summary>
    public void Reset() => Length = 0;

    /// <summary>Forgets the positions from <paramref name="length"/> on (to go back in a search, or to reuse a prompt's keys and values).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative or more than <see cref="Length"/>.</exception>
    public void Truncate(int length)
    {
        if (length < 0 || length > Length)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"The cache holds {Length} positions; it can be cut to 0–{Length}.");
        Length = length;
    }

    /// <summary>Layer <paramref name="layer"/>'s keys, [batch, heads, capacity, head size].</summary>
    internal float[] Keys(int layer) => _keys[layer];

    /// <summary>Layer <paramref name="layer"/>'s values, [batch, heads, capacity, head size].</summary>
    internal float[] Values(int layer) => _values[layer];

    /// <summary>Bytes a cache of these sizes holds (<see cref="long.MaxValue"/> when it overflows).</summary>
    internal static long Bytes(int layers, int batch, int dimension, int capacity)
    {
        try { return checked(2L * layers * batch * dimension * capacity * sizeof(float)); }
        catch (OverflowException) { return long.MaxValue; }
    }
}
