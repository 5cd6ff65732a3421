using System.Globalization;
using System.Text;

namespace Pruning.Configuration;

/// <summary>
/// The value identity of a schedule, criterion or granularity: its kind and every setting that changes what it does,
/// as invariant text, compared by value (like tfmot's <c>get_config</c>). Checkpoints store it, so a resumed run can
/// tell that it was configured the same way without depending on how <c>ToString</c> words things.
/// </summary>
public sealed class ComponentConfig : IEquatable<ComponentConfig>
{
    private const int MaxEntries = 64;
    private const int MaxTextLength = 4096;

    private readonly KeyValuePair<string, string>[] _settings;

    /// <summary>Creates a config.</summary>
    /// <param name="kind">What the component is, e.g. <c>PolynomialDecay</c>.</param>
    /// <param name="settings">Its settings in a fixed order; numbers are written with the invariant culture, doubles
    /// so that they round-trip, sequences as <c>[a, b]</c>.</param>
    public ComponentConfig(string kind, params (string Name, object? Value)[] settings)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(kind);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(settings.Length, MaxEntries, nameof(settings));
        Kind = kind;
        _settings = settings.Select(s =>
        {
            ArgumentException.ThrowIfNullOrWhiteSpace(s.Name, nameof(settings));
            return KeyValuePair.Create(s.Name, Format(s.Value));
        }).ToArray();
    }

    private ComponentConfig(string kind, KeyValuePair<string, string>[] settings)
    {
        Kind = kind;
        _settings = settings;
    }

    /// <summary>What the component is.</summary>
    public string Kind { get; }

    /// <summary>Its settings, in order, as invariant text.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Settings => _settings;

    /// <inheritdoc />
    public bool Equals(ComponentConfig? other) =>
        other is not null && Kind == other.Kind && _settings.AsSpan().SequenceEqual(other._settings);

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as ComponentConfig);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var hash = new HashCode();
        hash.Add(Kind);
        foreach (var (name, value) in _settings) { hash.Add(name); hash.Add(value); }
        return hash.ToHashCode();
    }

    /// <summary>Compares two configs by value.</summary>
    public static bool operator ==(ComponentConfig? left, ComponentConfig? right) => Equals(left, right);

    /// <summary>Compares two configs by value.</summary>
    public static bool operator !=(ComponentConfig? left, ComponentConfig? right) => !Equals(left, right);

    /// <summary><c>Kind(name=value, …)</c>.</summary>
    public override string ToString() =>
        _settings.Length == 0 ? Kind : $"{Kind}({string.Join(", ", _settings.Select(s => $"{s.Key}={s.Value}"))})";

    internal void Write(BinaryWriter writer)
    {
        writer.Write(Kind);
        writer.Write(_settings.Length);
        foreach (var (name, value) in _settings)
        {
            writer.Write(name);
            writer.Write(value);
        }
    }

    /// <summary>Reads a config written by <see cref="Write"/>; the caller maps EndOfStreamException to its own error.</summary>
    /// <exception cref="InvalidDataException">A count or a text is out of bounds.</exception>
    internal static ComponentConfig Read(BinaryReader reader)
    {
        string kind = ReadText(reader, "kind");
        int count = reader.ReadInt32();
        if (count < 0 || count > MaxEntries)
            throw new InvalidDataException($"a configuration of {kind} claims {count} settings (at most {MaxEntries})");
        var settings = new KeyValuePair<string, string>[count];
        for (int i = 0; i < count; i++)
            settings[i] = KeyValuePair.Create(ReadText(reader, "setting name"), ReadText(reader, "setting value"));
        return new ComponentConfig(kind, settings);
    }

    private static string ReadText(BinaryReader reader, string what)
    {
        string text = reader.ReadString();
        if (text.Length > MaxTextLength)
            throw new InvalidDataException($"a configuration {what} is {text.Length} characters long (at most {MaxTextLength})");
        return text;
    }

    private static string Format(object? value) => value switch
    {
        null => "null",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        string s => s,
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        System.Collections.IEnumerable sequence => "[" + string.Join(", ", sequence.Cast<object?>().Select(Format)) + "]",
        _ => value.ToString() ?? "",
    };
}
