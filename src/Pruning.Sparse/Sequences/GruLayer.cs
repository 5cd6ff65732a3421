using System.Runtime.CompilerServices;
using Pruning.Sparse.Matrices;

namespace Pruning.Sparse.Sequences;

/// <summary>
/// A GRU layer as PyTorch computes it, gates stacked [reset, update, new]: r = σ(W_ir x + b_ir + W_hr h + b_hr),
/// z = σ(W_iz x + b_iz + W_hz h + b_hz), n = tanh(W_in x + b_in + r·(W_hn h + b_hn)), h' = (1 − z)·n + z·h.
/// </summary>
public sealed class GruLayer : RecurrentLayer
{
    /// <summary>Creates the layer from PyTorch's <c>weight_ih_lK</c>, <c>weight_hh_lK</c>, <c>bias_ih_lK</c>, <c>bias_hh_lK</c> (biases may be empty).</summary>
    public GruLayer(WeightMatrix weightIh, WeightMatrix weightHh, ReadOnlySpan<float> biasIh, ReadOnlySpan<float> biasHh)
        : base(3, weightIh, weightHh, biasIh, biasHh) { }

    // b_hn sits inside r·(…), so the recurrent bias stays with the recurrent product.
    private protected override ReadOnlySpan<float> ProjectionBias => BiasIhArray;

    private protected override ReadOnlySpan<float> RecurrentBias => BiasHhArray;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private protected override void Cell(ReadOnlySpan<float> projection, int offset, int pitch, ReadOnlySpan<float> recurrent, int batch, Span<float> hidden, Span<float> cell)
    {
        int size = HiddenSize;
        for (int h = 0; h < size; h++)
        {
            int rr = h, rz = size + h, rn = 2 * size + h;
            for (int n = 0; n < batch; n++)
            {
                float r = Sigmoid(projection[rr * pitch + offset + n] + recurrent[rr * batch + n]);
                float z = Sigmoid(projection[rz * pitch + offset + n] + recurrent[rz * batch + n]);
                float candidate = MathF.Tanh(projection[rn * pitch + offset + n] + r * recurrent[rn * batch + n]);
                hidden[h * batch + n] = (1 - z) * candidate + z * hidden[h * batch + n];
            }
        }
    }
}
