using System.Numerics;
using System.Runtime.InteropServices;
using Pruning.Interop;
using Pruning.Selection;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Reconstruction;

/// <summary>
/// Optimal Brain Surgeon for one layer, made scalable as in SparseGPT (Frantar &amp; Alistarh 2023): the columns are
/// pruned left to right; when weight q of a row is pruned, the row's later weights absorb the error through the
/// inverse Hessian of the columns not yet processed, whose rows are those of the upper Cholesky factor U of H⁻¹
/// (UᵀU = H⁻¹). The saliency of a weight is w²/U_qq². Masks are chosen adaptively, one column block at a time, from
/// the weights as updated so far (N:M: one run at a time); updates to columns past the block are batched into one
/// matrix product per block ("lazy" updates), which changes nothing but the order of additions.
/// </summary>
internal static class ObsSolver
{
    /// <summary>
    /// Prunes <paramref name="weight"/> (CPU float64 [rows, columns], contiguous; updated in place, pruned entries
    /// set to zero) to <paramref name="target"/>, given the mean input covariance <paramref name="hessian"/> (CPU
    /// float64 [columns, columns]). Writes the keep-flags to <paramref name="keep"/>; with <paramref name="fixedKeep"/>
    /// the mask is given and only the weights are updated.
    /// </summary>
    /// <exception cref="InvalidOperationException">H is singular even after dampening; the message names the layer.</exception>
    public static unsafe void Prune(Tensor weight, Tensor hessian, WeightWindows windows, double target, double dampening, int blockSize,
        ReadOnlyMemory<bool> previousKeep, bool[] keep, bool[]? fixedKeep = null)
    {
        using var scope = torch.NewDisposeScope();
        int rows = windows.Rows, columns = windows.Columns;
        Tensor u = UpperCholeskyOfInverse(hessian, dampening, windows.Name).contiguous();
        double* uRows = (double*)Pointer(u);

        int[] bounds = windows.ColumnBlocks(blockSize);
        var granularity = windows.Granularity;
        int run = granularity.RunLength;
        int runPrune = run > 0 ? MaskSelector.RunCount(granularity, target, run) : 0;
        long[] shares = run == 0 && fixedKeep is null ? BlockBudgets(weight, u, windows, bounds, target, previousKeep) : [];

        for (int b = 0; b + 1 < bounds.Length; b++)
        {
            int c0 = bounds[b], c1 = bounds[b + 1], width = c1 - c0;
            using var blockScope = torch.NewDisposeScope();
            Tensor block = weight.narrow(1, c0, width).contiguous();
            Tensor errors = torch.zeros(rows, width, ScalarType.Float64);
            double* w1 = (double*)Pointer(block), e1 = (double*)Pointer(errors);
            var blockKeep = new bool[rows * width];

            if (fixedKeep is not null)
                for (int r = 0; r < rows; r++) fixedKeep.AsSpan(r * columns + c0, width).CopyTo(blockKeep.AsSpan(r * width, width));
            else if (run == 0)
            {
                var scores = new float[rows * width];
                for (int r = 0; r < rows; r++)
                    for (int i = 0; i < width; i++)
                        scores[r * width + i] = Saliency(w1[r * width + i], uRows[(long)(c0 + i) * columns + c0 + i]);
                windows.Select(0, rows, c0, c1, scores, shares[b], previousKeep, blockKeep);
            }

            bool adaptiveRuns = run > 0 && fixedKeep is null;
            Parallel.For(0, rows, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, r =>
            {
                double* row = w1 + (long)r * width, err = e1 + (long)r * width;
                Span<bool> rowKeep = blockKeep.AsSpan(r * width, width);
                Span<float> runScores = stackalloc float[Math.Max(run, 1)];
                for (int i = 0; i < width; i++)
                {
                    if (adaptiveRuns && i % run == 0)
                    {
                        for (int j = 0; j < run; j++) runScores[j] = Saliency(row[i + j], uRows[(long)(c0 + i + j) * columns + c0 + i + j]);
                        ReadOnlySpan<bool> before = previousKeep.IsEmpty ? default : previousKeep.Span.Slice(r * columns + c0 + i, run);
                        MaskSelector.SelectRun(runScores[..run], before, runPrune, rowKeep.Slice(i, run));
                    }
                    double* uRow = uRows + (long)(c0 + i) * columns + c0;
                    double value = row[i];
                    double e = rowKeep[i] ? 0 : value / uRow[i];
                    err[i] = e;
                    row[i] = rowKeep[i] ? value : 0;
                    if (e != 0) SubtractScaled(row + i + 1, uRow + i + 1, e, width - i - 1);
                }
            });

            weight.narrow(1, c0, width).copy_(block);
            if (c1 < columns)
            {
                Tensor rest = weight.narrow(1, c1, columns - c1);
                rest.sub_(errors.mm(u.narrow(0, c0, width).narrow(1, c1, columns - c1)));
            }
            for (int r = 0; r < rows; r++) blockKeep.AsSpan(r * width, width).CopyTo(keep.AsSpan(r * columns + c0, width));
        }
    }

    /// <summary>
    /// How many groups each column block prunes: as many as a ranking of the whole layer by its initial saliencies puts
    /// there. The total is the tensor's exact count; the blocks then choose which, from the weights updated so far.
    /// (An equal share per block, SparseGPT's choice, forces every block to the same sparsity, which costs accuracy
    /// when input columns differ in importance.)
    /// </summary>
    private static unsafe long[] BlockBudgets(Tensor weight, Tensor u, WeightWindows windows, int[] bounds, double target, ReadOnlyMemory<bool> previousKeep)
    {
        int rows = windows.Rows, columns = windows.Columns;
        double* w = (double*)Pointer(weight), uRows = (double*)Pointer(u);
        var scores = new float[rows * columns];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++)
                scores[r * columns + c] = Saliency(w[(long)r * columns + c], uRows[(long)c * columns + c]);
        var initial = new bool[scores.Length];
        windows.Select(0, rows, 0, columns, scores, MaskSelector.TargetCount(windows.Granularity, target, windows.Groups), previousKeep, initial);
        var budgets = new long[bounds.Length - 1];
        for (int b = 0; b < budgets.Length; b++) budgets[b] = windows.PrunedGroupsIn(initial, bounds[b], bounds[b + 1]);
        return budgets;
    }

    /// <summary>w²/U_qq²: the loss increase of pruning the weight, as float32 for the engine.</summary>
    private static float Saliency(double weight, double uqq) => (float)(weight * weight / (uqq * uqq));

    /// <summary>A dampening λ (a fraction of mean(diag H) added to H's diagonal) is finite and ≥ 0.</summary>
    internal static double CheckDampening(double value) => double.IsFinite(value) && value >= 0 ? value
        : throw new ArgumentOutOfRangeException("Dampening", value, "Dampening must be a finite value ≥ 0.");

    /// <summary>
    /// U with UᵀU = (H + λI)⁻¹, λ = <paramref name="dampening"/> · mean(diag H). Inputs that never vary (a zero diagonal
    /// entry) get λ like the rest; a layer whose inputs are all zero gets H = I.
    /// </summary>
    internal static Tensor UpperCholeskyOfInverse(Tensor hessian, double dampening, string name)
    {
        using var scope = torch.NewDisposeScope();
        Tensor h = hessian.to(ScalarType.Float64).clone();
        Tensor diagonal = h.diagonal();
        double mean = diagonal.mean().item<double>();
        if (!double.IsFinite(mean))
            throw new InvalidOperationException($"The calibration inputs of '{name}' hold NaN or infinite values.");
        if (mean == 0)
        {
            diagonal.fill_(Scalars.One);
        }
        else if (dampening > 0)
        {
            using var lambda = (dampening * mean).ToScalar();
            diagonal.add_(lambda);
        }
        var (lower, info) = torch.linalg.cholesky_ex(h);
        if (info.item<int>() != 0)
            throw new InvalidOperationException($"The input covariance of '{name}' is singular (its calibration inputs do not span all {h.shape[0]} inputs), so OBS cannot invert it. Set Dampening above 0 (SparseGPT uses 0.01) or give more calibration data.");
        Tensor inverse = torch.cholesky_inverse(lower);
        var (lowerOfInverse, info2) = torch.linalg.cholesky_ex(inverse);
        if (info2.item<int>() != 0)
            throw new InvalidOperationException($"The input covariance of '{name}' is too ill-conditioned to invert in float64. Raise Dampening.");
        return lowerOfInverse.mT.contiguous().MoveToOuterDisposeScope();
    }

    private static unsafe void* Pointer(Tensor t)
    {
        if (t.device_type != DeviceType.CPU || t.dtype != ScalarType.Float64 || !t.is_contiguous())
            throw new ArgumentException("The solver works on contiguous CPU float64 tensors.");
        return System.Runtime.CompilerServices.Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));
    }

    /// <summary>target[j] −= scale · source[j].</summary>
    private static unsafe void SubtractScaled(double* target, double* source, double scale, int count)
    {
        int j = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var s = new Vector<double>(scale);
            for (; j <= count - Vector<double>.Count; j += Vector<double>.Count)
            {
                var t = *(Vector<double>*)(target + j);
                *(Vector<double>*)(target + j) = t - s * *(Vector<double>*)(source + j);
            }
        }
        for (; j < count; j++) target[j] -= scale * source[j];
    }
}
