using System.Runtime.CompilerServices;
using System.Numerics;

namespace Pruning.Sparse.Sequences;

/// <summary>
/// Layer normalization over each token's features, as PyTorch's <c>LayerNorm(dimension)</c>:
/// y = (x − mean) / √(variance + ε) · weight + bias, with the biased variance.
/// </summary>
public sealed class LayerNorm
{
    private readonly float[] _weight, _bias;

    /// <summary>Creates the layer; <paramref name="weight"/> and <paramref name="bias"/> hold one value per feature (copied), or are empty for ones and zeros.</summary>
    /// <exception cref="ArgumentException">A non-empty <paramref name="weight"/> or <paramref name="bias"/> does not hold <paramref name="dimension"/> values, or <paramref name="epsilon"/> is negative or not finite.</exception>
    public LayerNorm(int dimension, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float epsilon = 1e-5f)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(dimension, 1);
        if (!weight.IsEmpty && weight.Length != dimension)
            throw new ArgumentException($"The weight holds {weight.Length} values for {dimension} features.", nameof(weight));
        if (!bias.IsEmpty && bias.Length != dimension)
            throw new ArgumentException($"The bias holds {bias.Length} values for {dimension} features.", nameof(bias));
        if (!float.IsFinite(epsilon) || epsilon < 0)
            throw new ArgumentException($"Epsilon must be finite and not negative, got {epsilon}.", nameof(epsilon));
        Dimension = dimension;
        Epsilon = epsilon;
        _weight = weight.IsEmpty ? Enumerable.Repeat(1f, dimension).ToArray() : weight.ToArray();
        _bias = bias.IsEmpty ? new float[dimension] : bias.ToArray();
    }

    /// <summary>Features per token.</summary>
    public int Dimension { get; }

    /// <summary>Added to the variance.</summary>
    public float Epsilon { get; }

    /// <summary>Scale per feature.</summary>
    public ReadOnlySpan<float> Weight => _weight;

    /// <summary>Shift per feature.</summary>
    public ReadOnlySpan<float> Bias => _bias;

    /// <summary>Weights and biases stored.</summary>
    public long StoredParameters => 2L * Dimension;

    /// <summary>
    /// Normalizes each column of the feature-major <paramref name="x"/> [Dimension, columns] into <paramref name="y"/>
    /// (which may be <paramref name="x"/>). <paramref name="statistics"/> has room for 2·columns values.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void Forward(ReadOnlySpan<float> x, Span<float> y, int columns, Span<float> statistics)
    {
        Span<float> mean = statistics[..columns], scale = statistics.Slice(columns, columns);
        mean.Clear();
        scale.Clear();
        for (int d = 0; d < Dimension; d++) Add(x.Slice(d * columns, columns), mean);
        float inverse = 1f / Dimension;
        for (int c = 0; c < columns; c++) mean[c] *= inverse;
        // Two passes: the variance from the centred values, not E[x²] − mean², which cancels for large means.
        for (int d = 0; d < Dimension; d++)
        {
            ReadOnlySpan<float> row = x.Slice(d * columns, columns);
            for (int c = 0; c < columns; c++)
            {
                float centred = row[c] - mean[c];
                scale[c] += centred * centred;
            }
        }
        for (int c = 0; c < columns; c++) scale[c] = 1f / MathF.Sqrt(scale[c] * inverse + Epsilon);
        for (int d = 0; d < Dimension; d++)
        {
            ReadOnlySpan<float> row = x.Slice(d * columns, columns);
            Span<float> output = y.Slice(d * columns, columns);
            float w = _weight[d], b = _bias[d];
            for (int c = 0; c < columns; c++) output[c] = (row[c] - mean[c]) * scale[c] * w + b;
        }
    }

    /// <summary>sum[i] += values[i].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Add(ReadOnlySpan<float> values, Span<float> sum)
    {
        int i = 0;
        for (; i <= values.Length - Vector<float>.Count; i += Vector<float>.Count)
            (new Vector<float>(sum[i..]) + new Vector<float>(values[i..])).CopyTo(sum[i..]);
        for (; i < values.Length; i++) sum[i] += values[i];
    }
}
