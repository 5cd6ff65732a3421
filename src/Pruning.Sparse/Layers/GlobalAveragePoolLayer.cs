namespace Pruning.Sparse.Layers;

/// <summary>Global average pooling: each channel's plane becomes its mean (PyTorch's AdaptiveAvgPool2d(1)).</summary>
public sealed class GlobalAveragePoolLayer : SparseLayer
{
    /// <inheritdoc />
    public override string Describe() => "GlobalAvgPool2d";

    /// <inheritdoc />
    public override FeatureShape OutputShape(FeatureShape input) => new(input.Channels, 1, 1);

    internal override void Forward(ReadOnlySpan<float> input, FeatureShape shape, Span<float> output, int batch, Span<float> scratch, int threads)
    {
        int plane = shape.Plane, planes = shape.Channels * batch;
        for (int p = 0; p < planes; p++)
        {
            double sum = 0;
            foreach (float v in input.Slice(p * plane, plane)) sum += v;
            output[p] = (float)(sum / plane);
        }
    }
}
