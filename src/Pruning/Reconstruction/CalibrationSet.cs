using static TorchSharp.torch;

namespace Pruning.Reconstruction;

/// <summary>
/// The inputs a reconstruction criterion calibrates on: a few hundred samples in batches, and how to run the model on
/// one batch. The batches are enumerated once per calibrated layer (pass a list); they are not disposed.
/// </summary>
/// <example><c>new CalibrationSet(trainBatches.Take(8).Select(b =&gt; b.Images).ToList())</c>; for a model whose forward
/// takes more than a tensor: <c>new CalibrationSet(batches, x =&gt; languageModel.call(x, null))</c>.</example>
public sealed class CalibrationSet
{
    /// <summary>Creates a calibration set.</summary>
    /// <param name="batches">The input batches, as the model takes them.</param>
    /// <param name="forward">Runs the model on one batch (its result is ignored). Defaults to <c>model.call(batch)</c>
    /// for a model that takes and returns one tensor. Layers see their inputs only through <c>Module.call</c>, so the
    /// model's own forward must call its layers with <c>call</c>, not <c>forward</c>.</param>
    public CalibrationSet(IEnumerable<Tensor> batches, Action<Tensor>? forward = null)
    {
        ArgumentNullException.ThrowIfNull(batches);
        Batches = batches;
        Forward = forward;
    }

    /// <summary>The input batches.</summary>
    public IEnumerable<Tensor> Batches { get; }

    /// <summary>Runs the model on one batch, or null for <c>model.call(batch)</c>.</summary>
    public Action<Tensor>? Forward { get; }
}
