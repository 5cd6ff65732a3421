using static TorchSharp.torch;

namespace Pruning.Criteria;

/// <summary>
/// State that a pruner's checkpoint carries for its scorer or its mask policy: accumulated gradient statistics, a
/// random generator, the inputs gathered for a reconstruction. Implement it on an <see cref="IPruningCriterion"/> or a
/// <see cref="MaskPolicy"/>; the pruner saves and restores it with the masks.
/// </summary>
public interface IPrunerState
{
    /// <summary>Writes the state; <see cref="LoadState"/> must read back exactly what this wrote.</summary>
    void SaveState(BinaryWriter writer);

    /// <summary>
    /// Replaces the state with one written by <see cref="SaveState"/>. Tensors it restores for a parameter are created
    /// on that parameter's device. On failure the previous state is kept.
    /// </summary>
    /// <param name="reader">The saved state, from an untrusted file: check every count before allocating.</param>
    /// <param name="parameters">The pruned parameters by name: state for any other name, or of another shape, is invalid.</param>
    /// <exception cref="InvalidDataException">The state does not fit these parameters.</exception>
    void LoadState(BinaryReader reader, IReadOnlyDictionary<string, Tensor> parameters);
}
