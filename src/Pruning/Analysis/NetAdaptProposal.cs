using static TorchSharp.torch;

namespace Pruning.Analysis;

/// <summary>What the short-term fine-tuning callback gets for one NetAdapt proposal.</summary>
public sealed class NetAdaptProposal
{
    private readonly Action _remask;

    internal NetAdaptProposal(nn.Module model, string layer, double sparsity, long? channels, Action remask)
    {
        Model = model;
        Layer = layer;
        Sparsity = sparsity;
        Channels = channels;
        _remask = remask;
    }

    /// <summary>The model, with this proposal's layer pruned.</summary>
    public nn.Module Model { get; }

    /// <summary>The weight this proposal prunes further (e.g. <c>fc1.weight</c>).</summary>
    public string Layer { get; }

    /// <summary>The proposal's sparsity for <see cref="Layer"/> (for channel NetAdapt, the fraction of its channels removed).</summary>
    public double Sparsity { get; }

    /// <summary>For channel NetAdapt, the channels <see cref="Layer"/> keeps; null for fine-grained NetAdapt.</summary>
    public long? Channels { get; }

    /// <summary>Re-applies every layer's mask; call it after each optimizer step so fine-tuning cannot revive pruned weights.</summary>
    public void Remask() => _remask();
}
