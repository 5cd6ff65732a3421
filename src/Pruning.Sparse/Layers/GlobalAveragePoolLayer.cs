using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
namespace Pruning.Sparse.Layers;

/// <summary>Global average pooling: each channel's plane becomes its mean (PyTorch's AdaptiveAvgPool2d(1)).</summary>
public sealed class GlobalAveragePoolLayer : SparseLayer
{
    /// <inheritdoc />
    public override string Describe() => "GlobalAvgPool2d";

    /// <inheritdoc />
    public override FeatureShape OutputShape(FeatureShape input) => new(input.Channels, 1, 1);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal override unsafe void Forward(ReadOnlySpan<float> input, FeatureShape shape, Span<float> output, int batch, Span<float> scratch, int threads)
    {
        int plane = shape.Plane, planes = shape.Channels * batch;
        if (input.Length < (long)plane * planes || output.Length < planes) throw new ArgumentException("The buffers are smaller than the shapes.", nameof(input));
        int[] bounds = Kernels.Parallelism.Even(planes, threads, (long)plane * planes);
        fixed (float* px = input, py = output)
        {
            nint src = (nint)px, dst = (nint)py;
            Kernels.Parallelism.Run(bounds, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (first, end) =>
            {
                for (int p = first; p < end; p++)
                {
                    float* v = (float*)src + (long)p * plane;
                    // Sums in double: eight floats at a time widened into two vectors of four, then four independent
                    // chains for the rest (one chain would wait on each add's latency).
                    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                    int i = 0;
                    if (Vector256.IsHardwareAccelerated && plane >= 8)
                    {
                        Vector256<double> low = Vector256<double>.Zero, high = Vector256<double>.Zero;
                        for (; i + 8 <= plane; i += 8)
                        {
                            Vector256<float> eight = Vector256.Load(v + i);
                            low += Vector256.WidenLower(eight);
                            high += Vector256.WidenUpper(eight);
                        }
                        s0 = Vector256.Sum(low + high);
                    }
                    for (; i + 4 <= plane; i += 4)
                    {
                        s0 += v[i];
                        s1 += v[i + 1];
                        s2 += v[i + 2];
                        s3 += v[i + 3];
                    }
                    for (; i < plane; i++) s0 += v[i];
                    ((float*)dst)[p] = (float)((s0 + s1 + (s2 + s3)) / plane);
                }
            });
        }
    }
}
