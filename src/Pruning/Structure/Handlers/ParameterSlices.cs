using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Structure;

/// <summary>What the built-in handlers do to a module's tensors when they shrink it and put it back.</summary>
internal static class ParameterSlices
{
    /// <summary>A new parameter holding the kept <paramref name="rows"/> and <paramref name="columns"/> (null = all) of <paramref name="tensor"/>.</summary>
    public static Parameter Select(Tensor tensor, long[]? rows, long[]? columns)
    {
        using var scope = torch.NewDisposeScope();
        var result = new Parameter(Selected(tensor, rows, columns).contiguous().clone(), requires_grad: tensor.requires_grad);
        result.DetachFromDisposeScope();
        return result;
    }

    /// <summary>The kept <paramref name="rows"/> and <paramref name="columns"/> (null = all) of <paramref name="tensor"/>, detached, in the caller's dispose scope.</summary>
    public static Tensor Selected(Tensor tensor, long[]? rows, long[]? columns)
    {
        Tensor t = tensor.detach();
        if (rows is not null) t = t.index_select(0, torch.tensor(rows, device: t.device));
        if (columns is not null) t = t.index_select(1, torch.tensor(columns, device: t.device));
        return t;
    }

    /// <summary>A copy of <paramref name="tensor"/> that outlives every dispose scope, with whether it wanted gradients.</summary>
    public static (Tensor Tensor, bool Grad)? Copy(Tensor? tensor) =>
        tensor is null ? null : (tensor.detach().clone().DetachFromDisposeScope(), tensor.requires_grad);

    /// <summary>A parameter over a <see cref="Copy"/>, or null.</summary>
    public static Parameter? Restore((Tensor Tensor, bool Grad)? saved)
    {
        if (saved is not { } s) return null;
        var parameter = new Parameter(s.Tensor, s.Grad);
        parameter.DetachFromDisposeScope();
        return parameter;
    }
}
