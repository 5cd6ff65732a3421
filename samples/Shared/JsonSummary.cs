using System.Text.Json;

namespace Pruning.Samples;

/// <summary>The samples' --summary-json files: indented JSON, written into a folder created when missing.</summary>
internal static class JsonSummary
{
    public static void Write(string path, object value)
    {
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null) Directory.CreateDirectory(folder);
        File.WriteAllText(path, JsonSerializer.Serialize(value, new JsonSerializerOptions { WriteIndented = true, IncludeFields = true }));
    }
}
