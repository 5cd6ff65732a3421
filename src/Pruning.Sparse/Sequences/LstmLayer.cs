using System.Runtime.CompilerServices;
using Pruning.Sparse.Matrices;

namespace Pruning.Sparse.Sequences;

/// <summary>
/// An LSTM layer as PyTorch computes it, gates stacked [input, forget, cell, output]:
/// i = σ(W_ii x + b_ii + W_hi h + b_hi), f = σ(…), g = tanh(…), o = σ(…); c' = f·c + i·g; h' = o·tanh(c').
/// </summary>
public sealed class LstmLayer : RecurrentLayer
{
    private readonly float[] _projectionBias;

    /// <summary>Creates the layer from PyTorch's <c>weight_ih_lK</c>, <c>weight_hh_lK</c>, <c>bias_ih_lK</c>, <c>bias_hh_lK</c> (biases may be empty).</summary>
    public LstmLayer(WeightMatrix weightIh, WeightMatrix weightHh, ReadOnlySpan<float> biasIh, ReadOnlySpan<float> biasHh)
        : base(4, weightIh, weightHh, biasIh, biasHh)
    {
        // Both biases are added before the gates, so they fold into one, added with the input projection.
        _projectionBias = new float[weightHh.Rows];
        for (int r = 0; r < _projectionBias.Length; r++)
            _projectionBias[r] = (BiasIhArray?[r] ?? 0f) + (BiasHhArray?[r] ?? 0f);
    }

    internal override bool HasCell => true;

    private protected override ReadOnlySpan<float> ProjectionBias => _projectionBias;

    private protected override ReadOnlySpan<float> RecurrentBias => default;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private protected override void Cell(ReadOnlySpan<float> projection, int offset, int pitch, ReadOnlySpan<float> recurrent, int batch, Span<float> hidden, Span<float> cell)
    {
        int size = HiddenSize;
        for (int h = 0; h < size; h++)
        {
            int ri = h, rf = size + h, rg = 2 * size + h, ro = 3 * size + h;
            for (int n = 0; n < batch; n++)
            {
                float i = Sigmoid(projection[ri * pitch + offset + n] + recurrent[ri * batch + n]);
                float f = Sigmoid(projection[rf * pitch + offset + n] + recurrent[rf * batch + n]);
                float g = MathF.Tanh(projection[rg * pitch + offset + n] + recurrent[rg * batch + n]);
                float o = Sigmoid(projection[ro * pitch + offset + n] + recurrent[ro * batch + n]);
                float c = f * cell[h * batch + n] + i * g;
                cell[h * batch + n] = c;
                hidden[h * batch + n] = o * MathF.Tanh(c);
            }
        }
    }
}
