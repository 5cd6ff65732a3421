using Pruning.Configuration;
using static TorchSharp.torch;

namespace Pruning.Criteria;

/// <summary>
/// Scores a weight tensor: the higher an element's score, the more important it is. Selection (which elements,
/// how many, layer-wise or global) is done elsewhere, so any criterion works with every scope and schedule.
/// </summary>
public interface IPruningCriterion
{
    /// <summary>
    /// Returns one finite score per element of <paramref name="weight"/>, same shape. The caller disposes the result
    /// and calls this under <c>torch.no_grad()</c>.
    /// </summary>
    /// <param name="parameterName">The parameter's name in the model (e.g. <c>fc1.weight</c>).</param>
    /// <param name="weight">The parameter's current values; masked entries are exactly zero.</param>
    Tensor Score(string parameterName, Tensor weight);

    /// <summary>
    /// The criterion's value identity, stored in checkpoints. The default is the type's name; a criterion with
    /// settings (a seed, a scale) includes them.
    /// </summary>
    ComponentConfig Config => new(GetType().Name);
}
