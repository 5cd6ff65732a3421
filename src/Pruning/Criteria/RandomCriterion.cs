using Pruning.Configuration;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Criteria;

/// <summary>
/// Uniform random scores: the baseline every pruning experiment needs. Deterministic for a seed, and its generator
/// state is saved with the pruner's checkpoint, so a resumed run draws the same numbers.
/// </summary>
public sealed class RandomCriterion(ulong seed) : IPruningCriterion, IPrunerState
{
    private readonly ulong _seed = seed;
    private ulong _state = seed;

    /// <inheritdoc />
    public ComponentConfig Config => new("Random", ("seed", _seed));

    /// <inheritdoc />
    public Tensor Score(string parameterName, Tensor weight)
    {
        var values = new float[weight.numel()];
        for (int i = 0; i < values.Length; i++)
            values[i] = (Next() >> 40) * (1f / (1 << 24)); // 24 random bits: uniform in [0, 1)
        using var host = torch.tensor(values, weight.shape);
        return host.to(weight.device);
    }

    /// <inheritdoc />
    public void SaveState(BinaryWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.Write(_state);
    }

    /// <inheritdoc />
    public void LoadState(BinaryReader reader, IReadOnlyDictionary<string, Tensor> parameters)
    {
        ArgumentNullException.ThrowIfNull(reader);
        _state = reader.ReadUInt64();
    }

    /// <inheritdoc />
    public override string ToString() => $"Random(seed={_seed})";

    private ulong Next()
    {
        // SplitMix64.
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
