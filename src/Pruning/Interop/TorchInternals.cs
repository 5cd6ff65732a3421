using System.Reflection;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Interop;

/// <summary>
/// Every place the library reaches into TorchSharp's private or version-specific state, written against TorchSharp
/// 0.107, so that an upgrade is audited here and nowhere else:
/// <list type="bullet">
/// <item>a module's channel counts, kept in read-only auto-properties (a Conv2d's <c>in_channels</c> and
/// <c>out_channels</c>, a BatchNorm's <c>num_features</c>): shrinking a module in place sets their compiler-generated
/// backing fields (and a Conv2d's <c>input_channels</c> where this TorchSharp has it);</item>
/// <item>whether an LSTM or GRU reads its input batch-first (its private <c>_batch_first</c>), for calibration;</item>
/// <item>which fields of each managed optimizer's per-parameter state are zero-initialised per-element buffers, for
/// clearing them at pruned positions.</item>
/// </list>
/// <see cref="Missing"/> lists every such member this TorchSharp lacks; a test fails naming it. Callers check before
/// changing anything (<see cref="RequireCounts"/>), so a TorchSharp that moved a field is refused, not half-applied.
/// </summary>
internal static class TorchInternals
{
    private const string Written = "TorchSharp 0.107";

    // The per-element buffers of TorchSharp 0.107's optimizers whose initial value is zero. Rprop's step sizes and
    // LBFGS's history are not zero-initialised and not per-element respectively, so they are not supported.
    private static readonly Dictionary<Type, string[]> ZeroInitialisedBuffers = new()
    {
        [typeof(SGD.State)] = ["momentum_buffer"],
        [typeof(Adam.State)] = ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
        [typeof(AdamW.State)] = ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
        [typeof(NAdam.State)] = ["exp_avg", "exp_avg_sq"],
        [typeof(RAdam.State)] = ["exp_avg", "exp_avg_sq"],
        [typeof(Adamax.State)] = ["exp_avg", "exp_inf"],
        [typeof(RMSProp.State)] = ["square_avg", "momentum_buffer", "grad_avg"],
        [typeof(Adagrad.State)] = ["sum"],
        [typeof(Adadelta.State)] = ["square_avg", "acc_delta"],
        [typeof(ASGD.State)] = ["ax"],
    };

    private static readonly (Type Owner, string Property)[] Counts =
        [(typeof(Conv2d), "in_channels"), (typeof(Conv2d), "out_channels"), (typeof(BatchNorm), "num_features")];

    private static readonly Type[] Recurrent = [typeof(LSTM), typeof(GRU)];

    /// <summary>Every member this library reaches that this TorchSharp does not have, as "Type.member"; empty on the TorchSharp it was written for.</summary>
    public static IReadOnlyList<string> Missing()
    {
        var missing = new List<string>();
        foreach (var (owner, property) in Counts)
            if (Field(owner, BackingField(property), typeof(long)) is null) missing.Add($"{owner.Name}.{BackingField(property)}");
        foreach (Type owner in Recurrent)
            if (Field(owner, "_batch_first", typeof(bool)) is null) missing.Add($"{owner.Name}._batch_first");
        foreach (var (state, names) in ZeroInitialisedBuffers)
            foreach (string name in names)
                if (state.GetField(name, BindingFlags.Public | BindingFlags.Instance) is not { } f || f.FieldType != typeof(Tensor))
                    missing.Add($"{state.DeclaringType?.Name}.State.{name}");
        return missing;
    }

    /// <summary>Checks that <paramref name="module"/>'s channel-count <paramref name="properties"/> can be set, before anything changes.</summary>
    /// <exception cref="NotSupportedException">This TorchSharp keeps one elsewhere; the message names the field. Nothing was changed.</exception>
    public static void RequireCounts(nn.Module module, params string[] properties)
    {
        foreach (string property in properties)
            if (Field(module.GetType(), BackingField(property), typeof(long)) is null)
                throw new NotSupportedException($"This TorchSharp's {module.GetType().Name} keeps no '{BackingField(property)}' field; shrinking in place was written against {Written}. Nothing was changed.");
    }

    /// <summary>Sets read-only channel count <paramref name="property"/> of <paramref name="module"/> (checked by <see cref="RequireCounts"/>).</summary>
    public static void SetCount(nn.Module module, string property, long value) =>
        (Field(module.GetType(), BackingField(property), typeof(long))
            ?? throw new NotSupportedException($"This TorchSharp's {module.GetType().Name} keeps no '{BackingField(property)}' field; shrinking in place was written against {Written}."))
        .SetValue(module, value);

    /// <summary>A Conv2d's <c>input_channels</c>, which some TorchSharp versions keep beside <c>in_channels</c>; null when this one does not.</summary>
    public static long? InputChannels(Conv2d conv) => Field(typeof(Conv2d), "input_channels", typeof(long))?.GetValue(conv) as long?;

    /// <summary>Sets a Conv2d's <c>input_channels</c> where this TorchSharp has it.</summary>
    public static void SetInputChannels(Conv2d conv, long value) => Field(typeof(Conv2d), "input_channels", typeof(long))?.SetValue(conv, value);

    /// <summary>Whether the LSTM or GRU <paramref name="recurrent"/> takes its input batch-first.</summary>
    /// <exception cref="NotSupportedException">This TorchSharp does not keep the flag where it was.</exception>
    public static bool BatchFirst(nn.Module recurrent)
    {
        FieldInfo field = Field(recurrent.GetType(), "_batch_first", typeof(bool))
            ?? throw new NotSupportedException($"This TorchSharp's {recurrent.GetType().Name} keeps no '_batch_first' field; calibration of recurrent layers was written against {Written}.");
        return (bool)field.GetValue(recurrent)!;
    }

    /// <summary>
    /// Readers of the zero-initialised per-element buffers in <paramref name="state"/> (each returns null while the
    /// optimizer has not created that buffer); null when this kind of optimizer state is not supported.
    /// </summary>
    /// <exception cref="InvalidOperationException">A supported state type lacks a field it had in the TorchSharp this was written for.</exception>
    public static Func<Tensor?>[]? ZeroInitialisedBuffersOf(OptimizerState state)
    {
        if (!ZeroInitialisedBuffers.TryGetValue(state.GetType(), out string[]? names)) return null;
        return names.Select(n =>
        {
            FieldInfo field = state.GetType().GetField(n, BindingFlags.Public | BindingFlags.Instance)
                ?? throw new InvalidOperationException($"{state.GetType().FullName} has no field '{n}'; clearing optimizer state was written against {Written}.");
            return (Func<Tensor?>)(() => field.GetValue(state) as Tensor);
        }).ToArray();
    }

    /// <summary>The optimizers whose state can be cleared, by name.</summary>
    public static IEnumerable<string> SupportedOptimizers => ZeroInitialisedBuffers.Keys.Select(k => k.DeclaringType!.Name);

    /// <summary>The backing field of auto-property <paramref name="property"/>, as the C# compiler names it.</summary>
    internal static string BackingField(string property) => $"<{property}>k__BackingField";

    private static FieldInfo? Field(Type owner, string name, Type type)
    {
        for (Type? t = owner; t is not null; t = t.BaseType)
            if (t.GetField(name, BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public) is { } info && info.FieldType == type)
                return info;
        return null;
    }
}
