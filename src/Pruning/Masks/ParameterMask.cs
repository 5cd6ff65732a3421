using System.Runtime.InteropServices;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Masks;

/// <summary>
/// The mask of one pruned parameter. It lives outside the module (never a Parameter, never in the state_dict), so a
/// pruned model still loads into a plain one. The parameter is looked up by name on every use, because
/// <c>Module.to(device)</c> replaces Parameter objects.
/// </summary>
internal sealed class ParameterMask : IDisposable
{
    private byte[]? _host;   // 1 = pruned, row-major; the authoritative copy
    private Tensor? _device; // bool tensor on the parameter's device, built lazily from _host

    public ParameterMask(string name, long[] shape)
    {
        Name = name;
        Shape = shape;
        Count = shape.Aggregate(1L, (a, b) => a * b);
        if (Count > Array.MaxLength)
            throw new NotSupportedException($"'{name}' has {Count} elements; masks of more than {Array.MaxLength} elements are not supported.");
    }

    public string Name { get; }

    public long[] Shape { get; }

    public long Count { get; }

    /// <summary>Whether a mask has been computed yet; before the first update nothing is pruned.</summary>
    public bool HasMask => _host is not null;

    /// <summary>Number of pruned positions.</summary>
    public long PrunedCount { get; private set; }

    /// <summary>The target sparsity of the last update (NaN before the first).</summary>
    public double Target { get; set; } = double.NaN;

    /// <summary>The step of the last update, or −1.</summary>
    public long LastUpdateStep { get; set; } = -1;

    /// <summary>The pruned flags (1 = pruned); do not modify.</summary>
    public ReadOnlySpan<byte> Flags => _host;

    /// <summary>Replaces the mask; returns (newly pruned, revived) relative to the previous one.</summary>
    public (long NewlyPruned, long Revived) Replace(byte[] pruned)
    {
        if (pruned.LongLength != Count)
            throw new ArgumentException($"Mask for '{Name}' has {pruned.LongLength} entries, the parameter {Count}.", nameof(pruned));
        long newly = 0, revived = 0, count = 0;
        for (int i = 0; i < pruned.Length; i++)
        {
            byte now = pruned[i];
            byte before = _host is null ? (byte)0 : _host[i];
            count += now;
            if (now > before) newly++;
            else if (now < before) revived++;
        }
        _host = pruned;
        PrunedCount = count;
        _device?.Dispose();
        _device = null;
        return (newly, revived);
    }

    /// <summary>The bool mask (true = pruned) on <paramref name="device"/>; owned by this object.</summary>
    public Tensor OnDevice(Device device)
    {
        if (_host is null)
            throw new InvalidOperationException($"'{Name}' has no mask yet.");
        if (_device is null || _device.device != device)
        {
            _device?.Dispose();
            using var host = torch.empty(Shape, ScalarType.Bool);
            _host.AsSpan().CopyTo(host.bytes);
            _device = host.to(device).DetachFromDisposeScope();
        }
        return _device;
    }

    /// <summary>Zeroes the pruned entries of <paramref name="parameter"/> in place. Call under no_grad.</summary>
    public void Apply(Parameter parameter, OptimizerStateHygiene? hygiene)
    {
        if (_host is null || PrunedCount == 0)
            return;
        Tensor pruned = OnDevice(parameter.device);
        parameter.masked_fill_(pruned, 0);
        hygiene?.Clear(parameter, pruned);
    }

    /// <summary>Positions that are masked but whose value is not exactly zero (0 when masking works).</summary>
    public long MaskedNonzero(Parameter parameter)
    {
        if (_host is null || PrunedCount == 0)
            return 0;
        using var scope = torch.NewDisposeScope();
        return parameter.detach().ne(0).logical_and(OnDevice(parameter.device)).sum().item<long>();
    }

    /// <summary>Forgets the mask (nothing pruned) and frees its device copy.</summary>
    public void Dispose()
    {
        _device?.Dispose();
        _device = null;
        _host = null;
        PrunedCount = 0;
        Target = double.NaN;
        LastUpdateStep = -1;
    }
}
