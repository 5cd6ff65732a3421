using System.Globalization;
using Pruning.Configuration;
using static TorchSharp.torch;

namespace Pruning.Reconstruction;

/// <summary>
/// Optimal Brain Surgeon made scalable (SparseGPT, Frantar &amp; Alistarh 2023): each layer's weights are pruned by
/// the OBS saliency w²/[H⁻¹]_qq and the remaining weights of each row are updated so that the layer's output on the
/// calibration inputs changes as little as possible. Works with every granularity whose groups can be taken a column
/// block at a time: single weights, N:M (chosen one run at a time, as SparseGPT does), blocks and Conv kernels.
/// </summary>
/// <remarks>
/// Cost per layer: O(d_in³) for the Cholesky factors and O(d_out·d_in²) for the updates, with d_in² doubles of memory.
/// The first pruned weights of a row have the most later columns to absorb their error, the last ones none.
/// </remarks>
/// <example>
/// <code>
/// var obs = new ObsPolicy(new CalibrationSet(calibrationBatches));
/// using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.7), Criterion = obs });
/// pruner.Step(); // prunes every target to 70 % now, rewriting the kept weights
/// </code>
/// </example>
public sealed class ObsPolicy : ReconstructionPolicy
{
    private readonly double _dampening = 0.01;
    private readonly int _blockSize = 128;

    /// <summary>Creates the criterion.</summary>
    /// <param name="calibration">Inputs to calibrate on at each mask update, layer by layer; null to use the
    /// training batches of the <see cref="ReconstructionPolicy.WindowBatches"/> steps before each update.</param>
    public ObsPolicy(CalibrationSet? calibration = null) : base(calibration) { }

    /// <summary>λ as a fraction of mean(diag H), added to H's diagonal so that it can be inverted.</summary>
    /// <value>The default is 0.01, SparseGPT's. 0 is allowed, and fails with a clear error when H is singular.</value>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative or not finite.</exception>
    public double Dampening
    {
        get => _dampening;
        init => _dampening = ObsSolver.CheckDampening(value);
    }

    /// <summary>Columns per block: masks are chosen a block at a time, and updates past the block are batched.</summary>
    /// <value>The default is 128, SparseGPT's. Blocks are widened to hold whole groups (a Conv's input channel, an N:M run).</value>
    /// <exception cref="ArgumentOutOfRangeException">The value is not positive.</exception>
    public int BlockSize
    {
        get => _blockSize;
        init
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(value, nameof(BlockSize));
            _blockSize = value;
        }
    }

    /// <inheritdoc />
    public override ComponentConfig Config => new("Obs", ("dampening", Dampening), ("block", BlockSize), ("window", WindowBatches),
        ("calibration", Calibration is null ? "training" : "set"));

    private protected override void Solve(Tensor weight, Tensor meanCovariance, WeightWindows windows, double target, ReadOnlyMemory<bool> previousKeep, bool[] keep) =>
        ObsSolver.Prune(weight, meanCovariance, windows, target, Dampening, BlockSize, previousKeep, keep);
}
