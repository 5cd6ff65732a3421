namespace Pruning.Sparse.Layers;

/// <summary>
/// One inference layer. Layers are immutable; a <see cref="SparseModel"/> chains them and owns the buffers.
/// Activations are channel-major across the batch: [C, N, H, W].
/// </summary>
public abstract class SparseLayer
{
    /// <summary>A short description, e.g. "Linear 784→300 CSR (90.0 % sparse)".</summary>
    public abstract string Describe();

    /// <summary>The output shape for one sample of <paramref name="input"/>; throws <see cref="ArgumentException"/> when this layer cannot take it.</summary>
    public abstract FeatureShape OutputShape(FeatureShape input);

    /// <summary>Values the layer stores and multiplies (weights kept plus biases).</summary>
    public virtual long StoredParameters => 0;

    /// <summary>Bytes of the layer's weights as stored for the kernels.</summary>
    public virtual long StoredBytes => 0;

    /// <summary>Scratch values this layer needs for a batch (e.g. im2col columns).</summary>
    internal virtual long ScratchSize(FeatureShape input, int batch) => 0;

    /// <summary>True when <see cref="Forward"/> may write its output over its input.</summary>
    internal virtual bool InPlace => false;

    /// <summary>Computes the output for <paramref name="batch"/> samples of shape <paramref name="input"/>.</summary>
    internal abstract void Forward(ReadOnlySpan<float> input, FeatureShape shape, Span<float> output, int batch, Span<float> scratch, int threads);

    internal static string Format(Matrices.WeightMatrix weight) =>
        weight.Format switch
        {
            Matrices.MatrixFormat.Csr => $"CSR, {weight.Sparsity:P1} sparse",
            Matrices.MatrixFormat.CsrFloat16 => $"CSR fp16, {weight.Sparsity:P1} sparse",
            Matrices.MatrixFormat.CsrInt8 => $"CSR int8, {weight.Sparsity:P1} sparse",
            Matrices.MatrixFormat.Bsr1x4 or Matrices.MatrixFormat.Bsr4x1 or Matrices.MatrixFormat.Bsr4x4 =>
                $"BSR {((Matrices.BsrMatrix)weight).Block.R}×{((Matrices.BsrMatrix)weight).Block.C}, {weight.Sparsity:P1} sparse",
            Matrices.MatrixFormat.Nm2of4 or Matrices.MatrixFormat.Nm4of8 =>
                $"{((Matrices.NmMatrix)weight).N}:{((Matrices.NmMatrix)weight).M}, {weight.Sparsity:P1} sparse",
            _ => $"dense, {weight.Sparsity:P1} zeros",
        };

    /// <summary>Throws unless both extents of <paramref name="value"/> are in [<paramref name="min"/>, 1024].</summary>
    internal static void CheckPair((int H, int W) value, int min, string name, string what)
    {
        if (value.H < min || value.W < min || value.H > 1024 || value.W > 1024)
            throw new ArgumentOutOfRangeException(name, value, $"{what} must be in [{min}, 1024].");
    }

    /// <summary>A copy of <paramref name="bias"/> (one value per output row), or null when it is empty (no bias).</summary>
    internal static float[]? CopyBias(ReadOnlySpan<float> bias, int rows)
    {
        if (bias.IsEmpty) return null;
        if (bias.Length != rows)
            throw new ArgumentException($"Bias must hold {rows} values (one per output), got {bias.Length}.", nameof(bias));
        return bias.ToArray();
    }
}
