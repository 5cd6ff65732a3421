using TorchSharp.Modules;

namespace Pruning.Export;

/// <summary>A BatchNorm's inference statistics and affine parameters as floats (γ = 1, β = 0 when it has none).</summary>
internal sealed record BatchNormValues(float[] Mean, float[] Variance, float[] Gamma, float[] Beta, double Epsilon)
{
    public static BatchNormValues From(BatchNorm bn, string name)
    {
        if (bn.running_mean is null || bn.running_var is null)
            throw new NotSupportedException($"BatchNorm '{name}' does not track running statistics, so it cannot be exported for inference.");
        int n = (int)bn.num_features;
        return new(SparseExport.Floats(bn.running_mean), SparseExport.Floats(bn.running_var),
            bn.weight is null ? Enumerable.Repeat(1f, n).ToArray() : SparseExport.Floats(bn.weight),
            bn.bias is null ? new float[n] : SparseExport.Floats(bn.bias), bn.eps);
    }
}
