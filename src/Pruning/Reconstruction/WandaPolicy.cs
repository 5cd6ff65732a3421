using Pruning.Configuration;
using Pruning.Interop;
using Pruning.Selection;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Reconstruction;

/// <summary>
/// Wanda (Sun et al. 2023): a weight's score is |W_ij|·‖X_j‖₂, its magnitude times the norm of its input over the
/// calibration data, compared within each output row; the kept weights are not changed. The cheap second-order-free
/// baseline: one pass over the inputs, no inversion.
/// </summary>
/// <remarks>
/// Rows are compared on their own when every group lies in one row (single weights, N:M, Conv kernels, 1×c blocks);
/// the tensor's exact count is shared across rows in proportion. Groups that span rows (taller blocks) are compared
/// across the whole tensor.
/// </remarks>
public sealed class WandaPolicy : ReconstructionPolicy
{
    /// <summary>Creates the criterion.</summary>
    /// <param name="calibration">Inputs to calibrate on at each mask update; null to use the recent training batches.</param>
    public WandaPolicy(CalibrationSet? calibration = null) : base(calibration) { }

    /// <inheritdoc />
    public override ComponentConfig Config => new("Wanda", ("window", WindowBatches), ("calibration", Calibration is null ? "training" : "set"));

    private protected override bool NeedsFullCovariance => false;

    private protected override void Solve(Tensor weight, Tensor meanCovariance, WeightWindows windows, double target, ReadOnlyMemory<bool> previousKeep, bool[] keep)
    {
        using var scope = torch.NewDisposeScope();
        Tensor scores = weight.abs().mul(meanCovariance.clamp_min(Scalars.Zero).sqrt().unsqueeze(0)).to(ScalarType.Float32).contiguous();
        float[] all = scores.data<float>().ToArray();
        int rows = windows.Rows, columns = windows.Columns;
        if (windows.Granularity.RunLength > 0)
        {
            var layer = new SelectionLayer(windows.Name, all, windows.Shape) { Sparsity = target, PreviousKeep = previousKeep };
            MaskSelector.SelectInto([layer], windows.Granularity, PruningScope.LayerWise, [keep]);
        }
        else if (windows.GroupsWithinRows)
        {
            long[] groups = Enumerable.Range(0, rows).Select(r => windows.GroupsIn(r, r + 1, 0, columns)).ToArray();
            long[] shares = WeightWindows.Share(MaskSelector.TargetCount(windows.Granularity, target, windows.Groups), groups);
            var rowKeep = new bool[columns];
            for (int r = 0; r < rows; r++)
            {
                windows.Select(r, r + 1, 0, columns, all[(r * columns)..((r + 1) * columns)], shares[r], previousKeep, rowKeep);
                rowKeep.CopyTo(keep, r * columns);
            }
        }
        else
        {
            windows.Select(0, rows, 0, columns, all, MaskSelector.TargetCount(windows.Granularity, target, windows.Groups), previousKeep, keep);
        }
        using var mask = torch.tensor(keep, ScalarType.Bool).reshape(rows, columns);
        weight.masked_fill_(mask.logical_not(), Scalars.Zero);
    }
}
