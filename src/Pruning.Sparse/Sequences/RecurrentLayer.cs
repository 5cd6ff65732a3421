using System.Runtime.CompilerServices;
using Pruning.Sparse.Matrices;

namespace Pruning.Sparse.Sequences;

/// <summary>
/// One recurrent layer (LSTM or GRU) in PyTorch's layout: <c>weight_ih</c> [gates·hidden, input] and <c>weight_hh</c>
/// [gates·hidden, hidden] with the gates' rows stacked, so that one product computes every gate. Over a sequence the
/// input projection is one matrix product for all steps; each step then adds the recurrent product (a sparse
/// matrix–vector product at batch 1) and applies the gates.
/// </summary>
public abstract class RecurrentLayer
{
    private protected RecurrentLayer(int gates, WeightMatrix weightIh, WeightMatrix weightHh, ReadOnlySpan<float> biasIh, ReadOnlySpan<float> biasHh)
    {
        WeightIh = weightIh ?? throw new ArgumentNullException(nameof(weightIh));
        WeightHh = weightHh ?? throw new ArgumentNullException(nameof(weightHh));
        if (weightHh.Rows % gates != 0 || weightHh.Cols != weightHh.Rows / gates)
            throw new ArgumentException($"weight_hh must be [{gates}·hidden, hidden]; got {weightHh.Rows}×{weightHh.Cols}.", nameof(weightHh));
        if (weightIh.Rows != weightHh.Rows)
            throw new ArgumentException($"weight_ih has {weightIh.Rows} rows but weight_hh {weightHh.Rows}; both are [{gates}·hidden, …].", nameof(weightIh));
        Gates = gates;
        HiddenSize = weightHh.Cols;
        BiasIhArray = Layers.SparseLayer.CopyBias(biasIh, weightIh.Rows);
        BiasHhArray = Layers.SparseLayer.CopyBias(biasHh, weightHh.Rows);
    }

    /// <summary>4 for an LSTM, 3 for a GRU.</summary>
    public int Gates { get; }

    /// <summary>Features of each input vector.</summary>
    public int InputSize => WeightIh.Cols;

    /// <summary>Features of the hidden state.</summary>
    public int HiddenSize { get; }

    /// <summary>Input weights [gates·hidden, input], gates stacked in PyTorch's order.</summary>
    public WeightMatrix WeightIh { get; }

    /// <summary>Recurrent weights [gates·hidden, hidden].</summary>
    public WeightMatrix WeightHh { get; }

    /// <summary>The input bias; empty when the layer has none.</summary>
    public ReadOnlySpan<float> BiasIh => BiasIhArray;

    /// <summary>The recurrent bias; empty when the layer has none.</summary>
    public ReadOnlySpan<float> BiasHh => BiasHhArray;

    private protected float[]? BiasIhArray { get; }

    private protected float[]? BiasHhArray { get; }

    /// <summary>Whether the layer keeps a cell state besides the hidden state (an LSTM does).</summary>
    internal virtual bool HasCell => false;

    /// <summary>"LSTM 256→256 (ih CSR, 90.0 % sparse; hh CSR, 90.0 % sparse)".</summary>
    public string Describe() =>
        $"{GetType().Name.Replace("Layer", "", StringComparison.Ordinal).ToUpperInvariant()} {InputSize}→{HiddenSize} (ih {Layers.SparseLayer.Format(WeightIh)}; hh {Layers.SparseLayer.Format(WeightHh)})";

    /// <summary>Weights and biases stored.</summary>
    public long StoredParameters => WeightIh.StoredEntries + WeightHh.StoredEntries + BiasIh.Length + BiasHh.Length;

    /// <summary>
    /// Runs <paramref name="steps"/> steps of <paramref name="batch"/> sequences. <paramref name="input"/> is feature-major
    /// [InputSize, steps·batch] (column t·batch + n); <paramref name="output"/> receives every step's hidden state the same
    /// way, [HiddenSize, steps·batch]. <paramref name="hidden"/> and <paramref name="cell"/> ([HiddenSize, batch]) hold the
    /// state before the first step and are left holding it after the last. <paramref name="projection"/> has room for
    /// [Gates·HiddenSize, steps·batch], <paramref name="gates"/> for [Gates·HiddenSize, batch].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void Forward(ReadOnlySpan<float> input, Span<float> output, int batch, int steps, Span<float> hidden, Span<float> cell,
        Span<float> projection, Span<float> gates, int threads)
    {
        int columns = batch * steps, rows = Gates * HiddenSize;
        Span<float> p = projection[..(rows * columns)];
        WeightIh.Multiply(input[..(InputSize * columns)], p, columns, ProjectionBias, threads);
        Span<float> g = gates[..(rows * batch)];
        for (int t = 0; t < steps; t++)
        {
            WeightHh.Multiply(hidden[..(HiddenSize * batch)], g, batch, RecurrentBias, threads);
            Cell(p, t * batch, columns, g, batch, hidden, cell);
            for (int h = 0; h < HiddenSize; h++) hidden.Slice(h * batch, batch).CopyTo(output.Slice(h * columns + t * batch, batch));
        }
    }

    /// <summary>The bias added to the input projection (the LSTM folds both biases into it).</summary>
    private protected abstract ReadOnlySpan<float> ProjectionBias { get; }

    /// <summary>The bias added to the recurrent product.</summary>
    private protected abstract ReadOnlySpan<float> RecurrentBias { get; }

    /// <summary>
    /// One step's gates: pre-activations are projection[r, offset + n] (pitch <paramref name="pitch"/>) and
    /// recurrent[r, n] (pitch <paramref name="batch"/>); updates hidden (and cell) in place.
    /// </summary>
    private protected abstract void Cell(ReadOnlySpan<float> projection, int offset, int pitch, ReadOnlySpan<float> recurrent, int batch, Span<float> hidden, Span<float> cell);

    private protected static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));
}
