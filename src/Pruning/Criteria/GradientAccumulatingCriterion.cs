using Pruning.Checkpoints;
using Pruning.Configuration;
using Pruning.Interop;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Criteria;

/// <summary>
/// Base for criteria that average a per-element quantity of the gradient over the steps between mask updates. It
/// keeps one tensor per pruned parameter, on the parameter's device: memory equal to the pruned weights. The sum is
/// kept in the parameter's dtype when that is float32 or float64, and in float32 for half-precision parameters, whose
/// sums of squared gradients would underflow.
/// </summary>
public abstract class GradientAccumulatingCriterion : IAccumulatingCriterion, IDisposable
{
    private const int MaxRank = 16;

    private readonly Dictionary<string, (Tensor Sum, long Count)> _windows = [];

    /// <summary>This step's contribution for each element (same shape as <paramref name="weight"/>).</summary>
    protected abstract Tensor Contribution(Tensor weight, Tensor gradient);

    /// <summary>The score from the weights and the window's mean contribution.</summary>
    protected abstract Tensor Score(Tensor weight, Tensor meanContribution);

    /// <summary>The criterion's value identity.</summary>
    public abstract ComponentConfig Config { get; }

    /// <summary>The dtype a parameter's window is summed in.</summary>
    internal static ScalarType SumType(ScalarType parameter) => parameter == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;

    /// <inheritdoc />
    public void Observe(string parameterName, Parameter parameter)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        using var scope = torch.NewDisposeScope();
        Tensor? gradient = parameter.grad;
        if (gradient is null)
            return; // a step without backward (or a frozen parameter) says nothing
        Tensor contribution = Contribution(parameter.detach(), gradient).to(SumType(parameter.dtype));
        if (_windows.TryGetValue(parameterName, out var window))
        {
            window.Sum.add_(contribution, Scalars.One);
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
        using var count = ((double)window.Count).ToScalar();
        using var mean = window.Sum.div(count);
        using var typed = mean.to(weight.dtype);
        return Score(weight, typed);
    }

    /// <inheritdoc />
    public void SaveState(BinaryWriter writer) => StateEntries.Write(writer, _windows, window =>
    {
        writer.Write(window.Count);
        writer.Write((int)window.Sum.dtype);
        writer.Write(window.Sum.shape.Length);
        foreach (long d in window.Sum.shape) writer.Write(d);
        StateEntries.WriteTensor(writer, window.Sum);
    });

    /// <inheritdoc />
    public void LoadState(BinaryReader reader, IReadOnlyDictionary<string, Tensor> parameters)
    {
        string owner = ToString()!;
        var loaded = StateEntries.Read(reader, parameters, owner, (name, parameter) =>
        {
            long count = reader.ReadInt64();
            var dtype = (ScalarType)reader.ReadInt32();
            int rank = reader.ReadInt32();
            if (count <= 0 || rank < 0 || rank > MaxRank)
                throw new InvalidDataException($"{owner}: the saved state of '{name}' is malformed (count {count}, rank {rank}).");
            var shape = new long[rank];
            for (int d = 0; d < rank; d++) shape[d] = reader.ReadInt64();
            if (!shape.SequenceEqual(parameter.shape))
                throw new InvalidDataException($"{owner}: the saved state of '{name}' has shape [{string.Join(", ", shape)}], the parameter [{string.Join(", ", parameter.shape)}].");
            if (dtype != SumType(parameter.dtype))
                throw new InvalidDataException($"{owner}: the saved state of '{name}' is {dtype}, but a {parameter.dtype} parameter sums in {SumType(parameter.dtype)}.");
            return (Sum: StateEntries.ReadTensor(reader, shape, dtype, parameter.device, owner, $"state of '{name}'"), Count: count);
        }, window => window.Sum.Dispose());
        foreach (var window in _windows.Values) window.Sum.Dispose();
        _windows.Clear();
        foreach (var (name, window) in loaded) _windows[name] = window;
    }

    /// <summary>Releases the accumulated tensors.</summary>
    public void Dispose()
    {
        foreach (var window in _windows.Values) window.Sum.Dispose();
        _windows.Clear();
        GC.SuppressFinalize(this);
    }
}
