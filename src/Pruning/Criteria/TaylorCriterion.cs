using Pruning.Configuration;
using static TorchSharp.torch;

namespace Pruning.Criteria;

/// <summary>
/// First-order Taylor importance (Molchanov et al. 2017/2019): the mean of |w·g| over the steps since the last mask
/// update, the first-order estimate of the loss change from removing the weight.
/// </summary>
public sealed class TaylorCriterion : GradientAccumulatingCriterion
{
    /// <inheritdoc />
    protected override Tensor Contribution(Tensor weight, Tensor gradient) => (weight * gradient).abs();

    /// <inheritdoc />
    protected override Tensor Score(Tensor weight, Tensor meanContribution) => meanContribution.clone();

    /// <inheritdoc />
    public override ComponentConfig Config { get; } = new("Taylor");

    /// <inheritdoc />
    public override string ToString() => "Taylor";
}
