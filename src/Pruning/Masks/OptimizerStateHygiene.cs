using Pruning.Interop;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Masks;

/// <summary>
/// Zeroes the optimizer's per-element state (momentum buffers, Adam's m and v, …) at pruned positions, so that a
/// weight that a mask update revives restarts from zero with the state of a weight never trained, instead of being
/// thrown back by stale momentum. Every buffer cleared here starts at zero in a fresh optimizer.
/// </summary>
/// <remarks>
/// The pruner clears state at every mask update (before scoring, for the positions the old masks pruned, and
/// after, for the new ones), on load and on strip, not after every step. That is enough: the state is element-wise
/// and pruned weights are re-zeroed after every step, so state at a pruned position cannot reach the model until an
/// update revives it. A test shows that clearing after every step trains bit-identically, and it would cost two
/// more passes over the weights per step with Adam.
/// </remarks>
internal sealed class OptimizerStateHygiene
{
    private readonly OptimizerHelper _optimizer;
    private readonly Dictionary<IntPtr, Func<Tensor?>[]> _byParameter = [];

    public OptimizerStateHygiene(optim.Optimizer optimizer)
    {
        if (optimizer is not OptimizerHelper helper)
            throw new ArgumentException(
                $"The optimizer {optimizer.GetType().Name} keeps its state in native code, where pruned entries cannot be cleared. " +
                "Use one of TorchSharp's managed optimizers (SGD, Adam, AdamW, …) or pass no optimizer.", nameof(optimizer));
        _optimizer = helper;
        Rebuild();
    }

    /// <summary>Re-reads which state belongs to which parameter (after the optimizer or model changed).</summary>
    public void Rebuild()
    {
        _byParameter.Clear();
        var parameters = _optimizer.parameters().ToList();
        var states = _optimizer.state_dict().State;
        if (parameters.Count != states.Count)
            throw new InvalidOperationException($"The optimizer lists {parameters.Count} parameters but {states.Count} states.");
        for (int i = 0; i < parameters.Count; i++)
            _byParameter[parameters[i].Handle] = BuffersOf(states[i]);
    }

    /// <summary>Whether the optimizer holds state for the parameter.</summary>
    public bool Tracks(Tensor parameter) => _byParameter.ContainsKey(parameter.Handle);

    /// <summary>Zeroes the parameter's buffers where <paramref name="keep"/> is 0. Call under no_grad.</summary>
    public void Clear(Tensor parameter, Tensor keep)
    {
        if (!_byParameter.TryGetValue(parameter.Handle, out var buffers))
            return;
        foreach (Func<Tensor?> buffer in buffers)
            if (buffer() is { IsInvalid: false } tensor)
                tensor.mul_(keep);
    }

    private static Func<Tensor?>[] BuffersOf(OptimizerState state) =>
        TorchInternals.ZeroInitialisedBuffersOf(state) ?? throw new ArgumentException(
            $"Clearing the optimizer state of pruned weights is not supported for {state.GetType().DeclaringType?.Name ?? state.GetType().Name}. " +
            $"Supported: {string.Join(", ", TorchInternals.SupportedOptimizers)}. " +
            "Pass no optimizer to prune without clearing its state (weights are still re-masked after every step).", "optimizer");
}
