using System.Reflection;

namespace Pruning.Interop;

/// <summary>
/// TorchSharp 0.107 keeps a module's channel counts in read-only auto-properties (a Conv2d's <c>in_channels</c> and
/// <c>out_channels</c>, a BatchNorm's <c>num_features</c>). Shrinking a module in place sets their compiler-generated
/// backing fields: the one place the library writes TorchSharp's private state. A TorchSharp that moves them is caught
/// before anything changes (<see cref="Has"/>), and by a test naming the field.
/// </summary>
internal static class TorchFields
{
    /// <summary>The backing field of auto-property <paramref name="property"/>, as the C# compiler names it.</summary>
    public static string BackingField(string property) => $"<{property}>k__BackingField";

    /// <summary>Whether <paramref name="target"/>'s type (or a base) has a long field named <paramref name="field"/>.</summary>
    public static bool Has(object target, string field) => Field(target, field) is not null;

    /// <summary>Sets the backing field of read-only auto-property <paramref name="property"/>.</summary>
    /// <exception cref="NotSupportedException">This TorchSharp has no such field.</exception>
    public static void SetCount(object target, string property, long value) => Set(target, BackingField(property), value, required: true);

    /// <summary>Sets long field <paramref name="field"/>; when <paramref name="required"/> is false and it does not exist, does nothing.</summary>
    public static void Set(object target, string field, long value, bool required)
    {
        if (Field(target, field) is { } info) info.SetValue(target, value);
        else if (required)
            throw new NotSupportedException($"This TorchSharp's {target.GetType().Name} keeps no '{field}' field; shrinking in place was written against TorchSharp 0.107.");
    }

    /// <summary>The value of long field <paramref name="field"/>, or null when there is none.</summary>
    public static long? Get(object target, string field) => Field(target, field)?.GetValue(target) as long?;

    private static FieldInfo? Field(object target, string field)
    {
        for (Type? type = target.GetType(); type is not null; type = type.BaseType)
            if (type.GetField(field, BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public) is { FieldType: var t } info && t == typeof(long))
                return info;
        return null;
    }
}
