using System.Globalization;
using System.Text;

namespace Pruning.Reporting;

/// <summary>A dry run of the schedule: every update step and the target per parameter, known before training starts.</summary>
/// <param name="Parameters">The pruned parameters, in column order.</param>
/// <param name="Steps">Each update step with one target per parameter (NaN where that parameter is not updated then).</param>
/// <param name="Global">Whether the targets are shared model-wide (per-tensor sparsities are then decided by the weights).</param>
public sealed record PruningPlan(IReadOnlyList<string> Parameters, IReadOnlyList<(long Step, double[] Targets)> Steps, bool Global)
{
    /// <summary>A table: one row per update step, one column per parameter (or one "global" column).</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        string[] columns = Global ? ["global target"] : [.. Parameters];
        sb.AppendLine("step".PadLeft(10) + "  " + string.Join("  ", columns.Select(c => c.PadLeft(Math.Max(c.Length, 8)))));
        foreach (var (step, targets) in Steps)
        {
            IEnumerable<double> cells = Global ? [targets[0]] : targets;
            sb.AppendLine(step.ToString(CultureInfo.InvariantCulture).PadLeft(10) + "  " + string.Join("  ", cells.Zip(columns, (t, c) =>
                (double.IsNaN(t) ? "-" : Percent.Format(t)).PadLeft(Math.Max(c.Length, 8)))));
        }
        return sb.ToString();
    }
}
