using System.Runtime.CompilerServices;
namespace Pruning.Sparse.Layers;

/// <summary>Turns each sample's [C, H, W] into a feature vector in PyTorch's order (c, h, w), as nn.Flatten does.</summary>
public sealed class FlattenLayer : SparseLayer
{
    /// <inheritdoc />
    public override string Describe() => "Flatten";

    /// <inheritdoc />
    public override FeatureShape OutputShape(FeatureShape input) => new(input.Size);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal override void Forward(ReadOnlySpan<float> input, FeatureShape shape, Span<float> output, int batch, Span<float> scratch, int threads)
    {
        // [C, N, HW] → [C·HW, N]: out[(c·HW + p)·N + n] = in[(c·N + n)·HW + p].
        int c = shape.Channels, plane = shape.Plane;
        if (batch == 1 || plane == 1) { input[..(shape.Size * batch)].CopyTo(output); return; }
        for (int ch = 0; ch < c; ch++)
            for (int n = 0; n < batch; n++)
            {
                ReadOnlySpan<float> src = input.Slice((ch * batch + n) * plane, plane);
                int baseIndex = ch * plane * batch + n;
                for (int p = 0; p < plane; p++) output[baseIndex + p * batch] = src[p];
            }
    }
}
