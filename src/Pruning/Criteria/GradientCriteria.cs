using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Criteria;

/// <summary>
/// Base for criteria that average a per-element quantity of the gradient over the steps between mask updates. It
/// keeps one float32 tensor per pruned parameter, on the parameter's device: memory equal to the pruned weights.
/// </summary>
public abstract class GradientAccumulatingCriterion : IAccumulatingCriterion, IDisposable
{
    private readonly Dictionary<string, (Tensor Sum, long Count)> _windows = [];

    /// <summary>This step's contribution for each element (same shape as <paramref name="weight"/>).</summary>
    protected abstract Tensor Contribution(Tensor weight, Tensor gradient);

    /// <summary>The score from the weights and the window's mean contribution.</summary>
    protected abstract Tensor Score(Tensor weight, Tensor meanContribution);

    /// <inheritdoc />
    public void Observe(string parameterName, Parameter parameter)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        using var scope = torch.NewDisposeScope();
        Tensor? gradient = parameter.grad;
        if (gradient is null)
            return; // a step without backward (or a frozen parameter) says nothing
        Tensor contribution = Contribution(parameter.detach(), gradient).to(ScalarType.Float32);
        if (_windows.TryGetValue(parameterName, out var window))
        {
            window.Sum.add_(contribution);
            _windows[parameterName] = (window.Sum, window.Count + 1);
        }
        else
        {
            _windows[parameterName] = (contribution.clone().DetachFromDisposeScope(), 1);
        }
    }

    /// <inheritdoc />
    public void Reset(string parameterName)
    {
        if (_windows.Remove(parameterName, out var window))
            window.Sum.Dispose();
    }

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">No gradient was observed for the parameter since the last update.</exception>
    public Tensor Score(string parameterName, Tensor weight)
    {
        if (!_windows.TryGetValue(parameterName, out var window))
            throw new InvalidOperationException(
                $"{this} has seen no gradient for '{parameterName}' since its last mask update. Call pruner.Step() after backward() and optimizer.step(), and start the schedule after at least one step.");
        using var mean = window.Sum / window.Count;
        return Score(weight, mean.to(weight.dtype));
    }

    /// <inheritdoc />
    public void SaveState(BinaryWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.Write(_windows.Count);
        foreach (var (name, (sum, count)) in _windows.OrderBy(w => w.Key, StringComparer.Ordinal))
        {
            writer.Write(name);
            writer.Write(count);
            writer.Write(sum.shape.Length);
            foreach (long d in sum.shape) writer.Write(d);
            using var host = sum.cpu().contiguous();
            writer.Write(host.bytes);
        }
    }

    /// <inheritdoc />
    public void LoadState(BinaryReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        foreach (var window in _windows.Values) window.Sum.Dispose();
        _windows.Clear();
        int entries = reader.ReadInt32();
        if (entries < 0 || entries > reader.BaseStream.Length)
            throw new InvalidDataException($"{this}: the saved state claims {entries} parameters.");
        for (int e = 0; e < entries; e++)
        {
            string name = reader.ReadString();
            long count = reader.ReadInt64();
            int rank = reader.ReadInt32();
            if (count <= 0 || rank < 0 || rank > 16)
                throw new InvalidDataException($"{this}: the saved state of '{name}' is malformed.");
            var shape = new long[rank];
            long numel = 1;
            for (int d = 0; d < rank; d++)
            {
                shape[d] = reader.ReadInt64();
                if (shape[d] < 0 || (shape[d] > 0 && numel > Array.MaxLength / 4 / shape[d]))
                    throw new InvalidDataException($"{this}: the saved state of '{name}' has an impossible shape.");
                numel *= shape[d];
            }
            if (numel * 4 > reader.BaseStream.Length - reader.BaseStream.Position)
                throw new InvalidDataException($"{this}: the saved state of '{name}' is truncated.");
            byte[] data = reader.ReadBytes((int)(numel * 4));
            var sum = torch.empty(shape, ScalarType.Float32);
            data.CopyTo(sum.bytes);
            _windows[name] = (sum, count);
        }
    }

    /// <summary>Releases the accumulated tensors.</summary>
    public void Dispose()
    {
        foreach (var window in _windows.Values) window.Sum.Dispose();
        _windows.Clear();
        GC.SuppressFinalize(this);
    }
}

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
    public override string ToString() => "Taylor";
}

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
    protected override Tensor Score(Tensor weight, Tensor meanContribution) => meanContribution * weight.square() * 0.5;

    /// <inheritdoc />
    public override string ToString() => "Fisher";
}

/// <summary>
/// Uniform random scores: the baseline every pruning experiment needs. Deterministic for a seed, and its generator
/// state is saved with the pruner's checkpoint, so a resumed run draws the same numbers.
/// </summary>
public sealed class RandomCriterion(ulong seed) : IStatefulCriterion
{
    private ulong _state = seed;

    /// <inheritdoc />
    public Tensor Score(string parameterName, Tensor weight)
    {
        var values = new float[weight.numel()];
        for (int i = 0; i < values.Length; i++)
            values[i] = (Next() >> 40) * (1f / (1 << 24)); // 24 random bits: uniform in [0, 1)
        return torch.tensor(values, weight.shape).to(weight.device);
    }

    /// <inheritdoc />
    public void SaveState(BinaryWriter writer) => writer.Write(_state);

    /// <inheritdoc />
    public void LoadState(BinaryReader reader) => _state = reader.ReadUInt64();

    /// <inheritdoc />
    public override string ToString() => "Random";

    private ulong Next()
    {
        // SplitMix64.
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
