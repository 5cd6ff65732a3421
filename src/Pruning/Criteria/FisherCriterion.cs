using Pruning.Configuration;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Criteria;

/// <summary>
/// Second-order saliency in the style of Optimal Brain Damage (LeCun et al. 1990): ½·H_ii·w², with the diagonal of
/// the Hessian approximated by the empirical Fisher, the mean of g² over the steps since the last mask update.
/// The approximation holds near a minimum of a log-likelihood loss; it costs one extra tensor per pruned weight.
/// </summary>
public sealed class FisherCriterion : GradientAccumulatingCriterion
{
    /// <inheritdoc />
    protected override Tensor Contribution(Tensor weight, Tensor gradient) => gradient.square();

    /// <inheritdoc />
    protected override Tensor Score(Tensor weight, Tensor meanContribution)
    {
        using var half = 0.5.ToScalar();
        using var squared = weight.square();
        return meanContribution.mul(squared).mul_(half);
    }

    /// <inheritdoc />
    public override ComponentConfig Config { get; } = new("Fisher");

    /// <inheritdoc />
    public override string ToString() => "Fisher";
}
