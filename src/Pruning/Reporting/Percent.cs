using System.Globalization;

namespace Pruning.Reporting;

/// <summary>"90.00%", whatever the current culture.</summary>
internal static class Percent
{
    public static string Format(double fraction) => (fraction * 100).ToString("F2", CultureInfo.InvariantCulture) + "%";
}
