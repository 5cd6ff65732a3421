using Pruning.Configuration;
using static TorchSharp.torch;

namespace Pruning.Criteria;

/// <summary>|w|: the criterion of Zhu &amp; Gupta (2017), tfmot and <c>l1_unstructured</c>.</summary>
public sealed class MagnitudeCriterion : IPruningCriterion
{
    /// <inheritdoc />
    public Tensor Score(string parameterName, Tensor weight) => weight.abs();

    /// <inheritdoc />
    public ComponentConfig Config { get; } = new("Magnitude");

    /// <inheritdoc />
    public override string ToString() => "Magnitude";
}
