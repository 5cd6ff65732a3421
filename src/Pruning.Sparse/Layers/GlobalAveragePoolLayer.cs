namespace Pruning.Sparse.Layers;

/// <summary>Global average pooling: each channel's plane becomes its mean (PyTorch's AdaptiveAvgPool2d(1)).</summary>
public sealed class GlobalAveragePoolLayer : SparseLayer
{
    /// <inheritdoc />
    public override string Describe() => "GlobalAvgPool2d";

    /// <inheritdoc />
    public override FeatureShape OutputShape(FeatureShape input) => new(input.Channels, 1, 1);

    internal override unsafe void Forward(ReadOnlySpan<float> input, FeatureShape shape, Span<float> output, int batch, Span<float> scratch, int threads)
    {
        int plane = shape.Plane, planes = shape.Channels * batch;
        if (input.Length < (long)plane * planes || output.Length < planes) throw new ArgumentException("The buffers are smaller than the shapes.", nameof(input));
        int[] bounds = Kernels.Parallelism.Even(planes, threads, (long)plane * planes);
        fixed (float* px = input, py = output)
        {
            nint src = (nint)px, dst = (nint)py;
            Kernels.Parallelism.Run(bounds, (first, end) =>
            {
                for (int p = first; p < end; p++)
                {
                    float* v = (float*)src + (long)p * plane;
                    double sum = 0;
                    for (int i = 0; i < plane; i++) sum += v[i];
                    ((float*)dst)[p] = (float)(sum / plane);
                }
            });
        }
    }
}
