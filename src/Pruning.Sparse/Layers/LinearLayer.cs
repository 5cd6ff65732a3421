using Pruning.Sparse.Matrices;

namespace Pruning.Sparse.Layers;

/// <summary>y = W·x + b over a feature vector; W is CSR or dense (see <see cref="WeightMatrix"/>).</summary>
public sealed class LinearLayer : SparseLayer
{
    private readonly float[]? _bias;

    /// <summary>Creates the layer; <paramref name="bias"/> holds one value per output (copied), or is empty for none.</summary>
    public LinearLayer(WeightMatrix weight, ReadOnlySpan<float> bias)
    {
        Weight = weight ?? throw new ArgumentNullException(nameof(weight));
        _bias = CopyBias(bias, weight.Rows);
    }

    /// <summary>Weights [outputs, inputs].</summary>
    public WeightMatrix Weight { get; }

    /// <summary>Bias per output; empty when the layer has none.</summary>
    public ReadOnlySpan<float> Bias => _bias;

    /// <inheritdoc />
    public override string Describe() => $"Linear {Weight.Cols}→{Weight.Rows} ({Format(Weight)})";

    /// <inheritdoc />
    public override long StoredParameters => Weight.StoredEntries + Bias.Length;

    /// <inheritdoc />
    public override long StoredBytes => Weight.StoredBytes + Bias.Length * sizeof(float);

    /// <inheritdoc />
    public override FeatureShape OutputShape(FeatureShape input)
    {
        if (!input.IsVector || input.Channels != Weight.Cols)
            throw new ArgumentException($"{Describe()} needs a vector of {Weight.Cols} features, got {input}. Add a Flatten before it if the input is an image.", nameof(input));
        return new FeatureShape(Weight.Rows);
    }

    internal override void Forward(ReadOnlySpan<float> input, FeatureShape shape, Span<float> output, int batch, Span<float> scratch, int threads) =>
        Weight.Multiply(input[..(Weight.Cols * batch)], output[..(Weight.Rows * batch)], batch, Bias, threads);
}
