using System.Runtime.CompilerServices;
namespace Pruning.Sparse.Sequences;

/// <summary>
/// The hidden (and, for LSTM layers, cell) state of every recurrent layer for a batch of sequences: what carries one
/// call of <see cref="SequenceModel.Run(ReadOnlySpan{int}, Span{float}, int, int, RecurrentState?, int)"/> on to the next
/// (generation, or a long text read in chunks). A new state is all zeros, as PyTorch's default.
/// </summary>
public sealed class RecurrentState
{
    private readonly float[][] _hidden;   // per layer, feature-major [hidden, batch]
    private readonly float[]?[] _cell;

    internal RecurrentState(IReadOnlyList<RecurrentLayer> layers, int batch)
    {
        Batch = batch;
        _hidden = layers.Select(l => new float[(long)l.HiddenSize * batch]).ToArray();
        _cell = layers.Select(l => l.HasCell ? new float[(long)l.HiddenSize * batch] : null).ToArray();
        HiddenSizes = layers.Select(l => l.HiddenSize).ToArray();
    }

    /// <summary>The number of sequences.</summary>
    public int Batch { get; }

    /// <summary>The number of layers.</summary>
    public int Layers => _hidden.Length;

    private int[] HiddenSizes { get; }

    internal Span<float> Hidden(int layer) => _hidden[layer];

    internal Span<float> Cell(int layer) => _cell[layer];

    /// <summary>Sets every value to zero (a new sequence).</summary>
    public void Reset()
    {
        foreach (float[] h in _hidden) Array.Clear(h);
        foreach (float[]? c in _cell) if (c is not null) Array.Clear(c);
    }

    /// <summary>Layer <paramref name="layer"/>'s hidden state as [batch, hidden] (PyTorch's h_n[layer]).</summary>
    public float[] GetHidden(int layer) => ToBatchMajor(_hidden[CheckLayer(layer)], HiddenSizes[layer]);

    /// <summary>Layer <paramref name="layer"/>'s cell state as [batch, hidden] (PyTorch's c_n[layer]); empty for a GRU layer.</summary>
    public float[] GetCell(int layer) => _cell[CheckLayer(layer)] is { } c ? ToBatchMajor(c, HiddenSizes[layer]) : [];

    /// <summary>Sets layer <paramref name="layer"/>'s state from [batch, hidden] values (PyTorch's h_0[layer], c_0[layer]).</summary>
    /// <param name="layer">The layer.</param>
    /// <param name="hidden">batch × hidden values.</param>
    /// <param name="cell">batch × hidden values for an LSTM layer; empty for a GRU layer.</param>
    /// <exception cref="ArgumentException">A span has the wrong length, or a cell state is given for a GRU layer (or missing for an LSTM).</exception>
    public void Set(int layer, ReadOnlySpan<float> hidden, ReadOnlySpan<float> cell = default)
    {
        int size = HiddenSizes[CheckLayer(layer)];
        if (hidden.Length != (long)size * Batch)
            throw new ArgumentException($"Layer {layer}'s hidden state holds batch × hidden = {Batch} × {size} values, got {hidden.Length}.", nameof(hidden));
        if (_cell[layer] is null != cell.IsEmpty || (!cell.IsEmpty && cell.Length != hidden.Length))
            throw new ArgumentException(_cell[layer] is null ? $"Layer {layer} is a GRU layer and has no cell state." : $"Layer {layer} is an LSTM layer: give its cell state, {Batch} × {size} values.", nameof(cell));
        FromBatchMajor(hidden, size, _hidden[layer]);
        if (_cell[layer] is { } c) FromBatchMajor(cell, size, c);
    }

    private int CheckLayer(int layer)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(layer);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(layer, Layers);
        return layer;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private float[] ToBatchMajor(float[] state, int size)
    {
        var result = new float[state.Length];
        for (int h = 0; h < size; h++)
            for (int n = 0; n < Batch; n++) result[n * size + h] = state[h * Batch + n];
        return result;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void FromBatchMajor(ReadOnlySpan<float> values, int size, float[] state)
    {
        for (int h = 0; h < size; h++)
            for (int n = 0; n < Batch; n++) state[h * Batch + n] = values[n * size + h];
    }
}
