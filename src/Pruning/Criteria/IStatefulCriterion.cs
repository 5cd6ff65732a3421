using static TorchSharp.torch;

namespace Pruning.Criteria;

/// <summary>A criterion with state that a checkpoint must carry (accumulated gradients, a random generator).</summary>
public interface IStatefulCriterion : IPruningCriterion
{
    /// <summary>Writes the state; <see cref="LoadState"/> must read back exactly what this wrote.</summary>
    void SaveState(BinaryWriter writer);

    /// <summary>
    /// Replaces the state with one written by <see cref="SaveState"/>. Tensors it restores for a parameter are created
    /// on that parameter's device. On failure the previous state is kept.
    /// </summary>
    /// <param name="reader">The saved state, from an untrusted file: check every count before allocating.</param>
    /// <param name="parameters">The pruned parameters by name: state for any other name, or of another shape, is invalid.</param>
    /// <exception cref="InvalidDataException">The state does not fit this criterion or these parameters.</exception>
    void LoadState(BinaryReader reader, IReadOnlyDictionary<string, Tensor> parameters);
}
