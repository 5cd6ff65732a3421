using System.Reflection;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Structure;

/// <summary>
/// Makes a Conv2d, Linear or BatchNorm physically smaller in place, keeping the module object (a user's forward holds
/// it in a field): its parameters and buffers are replaced by the kept rows and columns, and its channel counts are
/// updated. Optimizers created before hold the old parameters.
/// </summary>
internal static class ModuleSurgery
{
    /// <summary>Keeps output rows <paramref name="rows"/> and input columns <paramref name="columns"/> (null = all).</summary>
    public static void Shrink(nn.Module module, long[]? rows, long[]? columns)
    {
        switch (module)
        {
            case Conv2d conv:
                bool depthwise = ChannelSpaces.IsDepthwise(conv);
                if (depthwise) columns = null; // one input channel per filter: the rows are the channels
                conv.weight = Select(conv.weight!, rows, columns);
                if (conv.bias is { } convBias) conv.bias = Select(convBias, rows, null);
                long outputs = conv.weight.shape[0];
                long inputs = depthwise ? outputs : conv.weight.shape[1] * conv.groups;
                SetCount(conv, "out_channels", outputs);
                SetCount(conv, "in_channels", inputs);
                SetField(conv, "input_channels", inputs, required: false);
                if (depthwise) conv.groups = outputs;
                break;
            case Linear linear:
                linear.weight = Select(linear.weight!, rows, columns);
                if (linear.bias is { } linearBias) linear.bias = Select(linearBias, rows, null);
                linear.out_features = linear.weight.shape[0];
                linear.in_features = linear.weight.shape[1];
                break;
            case BatchNorm bn when columns is null:
                if (rows is null) return;
                using (var index = torch.tensor(rows, device: (bn.weight ?? bn.running_mean)!.device))
                {
                    if (bn.weight is { } w) bn.weight = Select(w, rows, null);
                    if (bn.bias is { } b) bn.bias = Select(b, rows, null);
                    if (bn.running_mean is { } mean) bn.running_mean = mean.index_select(0, index).DetachFromDisposeScope();
                    if (bn.running_var is { } var) bn.running_var = var.index_select(0, index).DetachFromDisposeScope();
                }
                SetCount(bn, "num_features", rows.Length);
                break;
            default:
                throw new NotSupportedException($"'{module.GetName()}' is a {module.GetType().Name}; only Conv2d, Linear and BatchNorm are shrunk in place.");
        }
    }

    private static Parameter Select(Tensor tensor, long[]? rows, long[]? columns)
    {
        using var scope = torch.NewDisposeScope();
        var result = new Parameter(Selected(tensor, rows, columns).contiguous().clone(), requires_grad: tensor.requires_grad);
        result.DetachFromDisposeScope();
        return result;
    }

    /// <summary>The kept <paramref name="rows"/> and <paramref name="columns"/> (null = all) of <paramref name="tensor"/>, detached, in the caller's dispose scope.</summary>
    internal static Tensor Selected(Tensor tensor, long[]? rows, long[]? columns)
    {
        Tensor t = tensor.detach();
        if (rows is not null) t = t.index_select(0, torch.tensor(rows, device: t.device));
        if (columns is not null) t = t.index_select(1, torch.tensor(columns, device: t.device));
        return t;
    }

    /// <summary>
    /// Copies of what <see cref="Shrink"/> replaces in <paramref name="module"/> (TorchSharp disposes a replaced
    /// parameter), and the action that puts them back.
    /// </summary>
    public static Action Save(nn.Module module)
    {
        switch (module)
        {
            case Conv2d conv:
                var (w, b, groups, input) = (Copy(conv.weight), Copy(conv.bias), conv.groups, Field(conv, "input_channels")?.GetValue(conv));
                long inputs = conv.in_channels, outputs = conv.out_channels;
                return () =>
                {
                    (conv.weight, conv.bias, conv.groups) = (Restore(w)!, Restore(b), groups);
                    SetCount(conv, "in_channels", inputs);
                    SetCount(conv, "out_channels", outputs);
                    if (input is long n) SetField(conv, "input_channels", n, required: false);
                };
            case Linear linear:
                var (lw, lb, inFeatures, outFeatures) = (Copy(linear.weight), Copy(linear.bias), linear.in_features, linear.out_features);
                return () => (linear.weight, linear.bias, linear.in_features, linear.out_features) = (Restore(lw)!, Restore(lb), inFeatures, outFeatures);
            case BatchNorm bn:
                var (gamma, beta, mean, variance, features) = (Copy(bn.weight), Copy(bn.bias), Copy(bn.running_mean), Copy(bn.running_var), bn.num_features);
                return () =>
                {
                    if (gamma is not null) bn.weight = Restore(gamma)!;
                    if (beta is not null) bn.bias = Restore(beta)!;
                    if (mean is not null) bn.running_mean = mean.Value.Tensor;
                    if (variance is not null) bn.running_var = variance.Value.Tensor;
                    SetCount(bn, "num_features", features);
                };
            default:
                return () => { };
        }
    }

    private static (Tensor Tensor, bool Grad)? Copy(Tensor? tensor) =>
        tensor is null ? null : (tensor.detach().clone().DetachFromDisposeScope(), tensor.requires_grad);

    private static Parameter? Restore((Tensor Tensor, bool Grad)? saved)
    {
        if (saved is not { } s) return null;
        var parameter = new Parameter(s.Tensor, s.Grad);
        parameter.DetachFromDisposeScope();
        return parameter;
    }

    /// <summary>
    /// Throws unless <paramref name="module"/> can be shrunk in place (its type is known and this TorchSharp keeps the
    /// fields its channel counts live in), so that a model is never left half shrunk.
    /// </summary>
    public static void Check(nn.Module module)
    {
        string[] fields = module switch
        {
            Conv2d => ["<out_channels>k__BackingField", "<in_channels>k__BackingField"],
            BatchNorm => ["<num_features>k__BackingField"],
            Linear => [],
            _ => throw new NotSupportedException($"'{module.GetName()}' is a {module.GetType().Name}; only Conv2d, Linear and BatchNorm are shrunk in place."),
        };
        foreach (string field in fields)
            if (Field(module, field) is null)
                throw new NotSupportedException($"This TorchSharp's {module.GetType().Name} keeps no '{field}' field; shrinking in place was written against TorchSharp 0.107. Nothing was changed.");
    }

    /// <summary>TorchSharp's channel counts are read-only auto-properties; their backing fields are set here.</summary>
    private static void SetCount(object target, string property, long value) => SetField(target, $"<{property}>k__BackingField", value, required: true);

    private static void SetField(object target, string field, long value, bool required)
    {
        if (Field(target, field) is { } info) info.SetValue(target, value);
        else if (required)
            throw new NotSupportedException($"This TorchSharp's {target.GetType().Name} keeps no '{field}' field; shrinking in place was written against TorchSharp 0.107.");
    }

    private static FieldInfo? Field(object target, string field)
    {
        for (Type? type = target.GetType(); type is not null; type = type.BaseType)
            if (type.GetField(field, BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public) is { FieldType: var t } info && t == typeof(long))
                return info;
        return null;
    }
}
