using Pruning.Interop;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Optimizers;

/// <summary>
/// The part Adam and AdamW share, in TorchSharp 0.107's order of operations: the moments, the bias corrections and the
/// parameter update. It holds one parameter group's Scalars until it is disposed, and each step's until the step ends.
/// </summary>
internal sealed class AdamMoments(double lr, double beta1, double beta2, double eps) : IDisposable
{
    private readonly Scalar b1 = beta1.ToScalar(), oneMinusB1 = (1 - beta1).ToScalar(), b2 = beta2.ToScalar(), oneMinusB2 = (1 - beta2).ToScalar();
    private readonly Scalar epsilon = eps.ToScalar();

    public void Dispose()
    {
        foreach (Scalar s in new[] { b1, oneMinusB1, b2, oneMinusB2, epsilon }) s.Dispose();
    }

    /// <summary>One step for one parameter: m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g·<paramref name="gradFactor"/>, then
    /// param ← param − lr/(1 − β₁ᵗ) · m / (√v̂/√(1 − β₂ᵗ) + ε), v̂ = v or, with AMSGrad, its running maximum.</summary>
    public void Step(Parameter param, Tensor grad, Tensor gradFactor, long step, Tensor expAvg, Tensor expAvgSq, ref Tensor maxExpAvgSq, bool amsgrad)
    {
        double biasCorrection1 = 1 - Math.Pow(beta1, step);
        double biasCorrection2 = 1 - Math.Pow(beta2, step);
        expAvg.mul_(b1).add_(grad, oneMinusB1);
        expAvgSq.mul_(b2).addcmul_(grad, gradFactor, oneMinusB2);

        using Scalar correction = Math.Sqrt(biasCorrection2).ToScalar();
        Tensor denom;
        if (amsgrad)
        {
            Tensor previous = maxExpAvgSq;
            maxExpAvgSq = torch.maximum(previous, expAvgSq).DetachFromDisposeScope();
            previous.Dispose();
            denom = maxExpAvgSq.sqrt().div(correction).add_(epsilon, Scalars.One);
        }
        else
        {
            denom = expAvgSq.sqrt().div(correction).add_(epsilon, Scalars.One);
        }
        using Scalar stepSize = (-(lr / biasCorrection1)).ToScalar();
        param.addcdiv_(expAvg, denom, stepSize);
    }
}
