namespace Pruning;

/// <summary>Small helpers for exceptions that wrap others.</summary>
internal static class Errors
{
    /// <summary>The message of <paramref name="e"/> without the "(Parameter 'x')" that .NET appends, for re-wrapping under another argument.</summary>
    public static string Bare(this ArgumentException e) =>
        e.ParamName is null ? e.Message : e.Message.Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal);
}
