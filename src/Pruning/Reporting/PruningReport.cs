using System.Globalization;
using System.Text;

namespace Pruning.Reporting;

/// <summary>One row of a <see cref="PruningReport"/>, measured from the weights themselves.</summary>
/// <param name="Name">The parameter's name.</param>
/// <param name="Shape">Its shape.</param>
/// <param name="TargetSparsity">The target of its last mask update (0 before the first).</param>
/// <param name="Nonzero">Elements that are not exactly zero.</param>
/// <param name="Total">Elements in the parameter.</param>
/// <param name="MaskedNonzero">Masked positions that are not exactly zero; 0 unless something bypassed the pruner.</param>
public sealed record LayerReport(string Name, long[] Shape, double TargetSparsity, long Nonzero, long Total, long MaskedNonzero)
{
    /// <summary>1 − Nonzero / Total.</summary>
    public double Sparsity => Total == 0 ? 0 : 1 - (double)Nonzero / Total;
}

/// <summary>The state of every pruned parameter and the model total.</summary>
/// <param name="Step">The pruner step when the report was taken.</param>
/// <param name="Layers">One row per pruned parameter.</param>
public sealed record PruningReport(long Step, IReadOnlyList<LayerReport> Layers)
{
    /// <summary>Non-zeros across the pruned parameters.</summary>
    public long Nonzero => Layers.Sum(l => l.Nonzero);

    /// <summary>Elements across the pruned parameters.</summary>
    public long Total => Layers.Sum(l => l.Total);

    /// <summary>Sparsity across the pruned parameters.</summary>
    public double Sparsity => Total == 0 ? 0 : 1 - (double)Nonzero / Total;

    /// <summary>Masked positions that are not exactly zero, across all parameters.</summary>
    public long MaskedNonzero => Layers.Sum(l => l.MaskedNonzero);

    /// <summary>Writes the sparsity of each parameter and the total as TensorBoard scalars under <c>pruning/</c>.</summary>
    /// <param name="writer">TorchSharp's <c>torch.utils.tensorboard.SummaryWriter</c>.</param>
    public void WriteScalars(TorchSharp.Modules.SummaryWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        int step = (int)Math.Min(Step, int.MaxValue);
        foreach (LayerReport l in Layers)
            writer.add_scalar($"pruning/sparsity/{l.Name}", (float)l.Sparsity, step);
        writer.add_scalar("pruning/sparsity/total", (float)Sparsity, step);
    }

    /// <summary>A plain-text table: parameter, shape, target, actual sparsity, nnz, total; then the total row.</summary>
    public override string ToString()
    {
        var rows = Layers.Select(l => new[]
        {
            l.Name, string.Join("x", l.Shape), Percent.Format(l.TargetSparsity), Percent.Format(l.Sparsity),
            l.Nonzero.ToString("N0", CultureInfo.InvariantCulture), l.Total.ToString("N0", CultureInfo.InvariantCulture),
        }).ToList();
        rows.Add(["total", "", "", Percent.Format(Sparsity), Nonzero.ToString("N0", CultureInfo.InvariantCulture), Total.ToString("N0", CultureInfo.InvariantCulture)]);
        string[] header = ["parameter", "shape", "target", "sparsity", "nnz", "total"];
        int[] widths = Enumerable.Range(0, header.Length).Select(c => rows.Append(header).Max(r => r[c].Length)).ToArray();
        var sb = new StringBuilder();
        void Line(string[] cells) =>
            sb.AppendLine(string.Join("  ", cells.Select((c, i) => i < 2 ? c.PadRight(widths[i]) : c.PadLeft(widths[i]))).TrimEnd());
        Line(header);
        Line(widths.Select(w => new string('-', w)).ToArray());
        foreach (string[] row in rows.Take(rows.Count - 1)) Line(row);
        Line(widths.Select(w => new string('-', w)).ToArray());
        Line(rows[^1]);
        return sb.ToString();
    }

}
