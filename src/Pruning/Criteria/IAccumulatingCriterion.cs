using TorchSharp.Modules;

namespace Pruning.Criteria;

/// <summary>
/// A criterion that learns from training between mask updates. The pruner calls <see cref="Observe"/> at every step,
/// after <c>optimizer.step()</c> and the re-masking, while <c>parameter.grad</c> still holds the step's gradient;
/// it calls <see cref="Reset"/> after each mask update of the parameter, so every update sees one Δt window.
/// </summary>
public interface IAccumulatingCriterion : IPruningCriterion, IPrunerState
{
    /// <summary>Accumulates what this step says about the parameter. Called under <c>torch.no_grad()</c>.</summary>
    void Observe(string parameterName, Parameter parameter);

    /// <summary>Starts a new window for the parameter.</summary>
    void Reset(string parameterName);
}
