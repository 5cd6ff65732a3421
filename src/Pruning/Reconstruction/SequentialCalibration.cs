using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Reconstruction;

/// <summary>
/// Runs a calibration set through a model one stage at a time, so that each stage's inputs come from the layers
/// before it as they are at that moment (already pruned when the caller has pruned them): the loop SparseGPT uses,
/// shared by the reconstruction criteria and channel reconstruction.
/// </summary>
internal sealed class SequentialCalibration : IDisposable
{
    private readonly nn.Module _model;
    private readonly CalibrationSet _calibration;
    private readonly string _who;
    private readonly List<(nn.Module Module, bool Training)> _modes;

    /// <summary>Puts the model in evaluation mode until disposed (then every module's mode is restored).</summary>
    public SequentialCalibration(nn.Module model, CalibrationSet calibration, string who)
    {
        if (calibration.Forward is null && model is not nn.Module<Tensor, Tensor>)
            throw new ArgumentException($"The model ({model.GetType().Name}) does not take one tensor, so the CalibrationSet needs a forward delegate that runs it on a batch.", nameof(calibration));
        _model = model;
        _calibration = calibration;
        _who = who;
        _modes = model.named_modules().Select(m => (m.module, m.module.training)).Append((model, model.training)).ToList();
        model.eval();
    }

    /// <summary>The stages in the order the model first calls their modules, found with one batch.</summary>
    /// <exception cref="InvalidOperationException">The set is empty, or a stage's module never runs; the message names it.</exception>
    public IReadOnlyList<CalibrationStage> Order(IReadOnlyList<CalibrationStage> stages)
    {
        var first = new Dictionary<nn.Module, int>(ReferenceEqualityComparer.Instance);
        var hooks = stages.GroupBy(s => s.Instance, ReferenceEqualityComparer.Instance)
            .Select(g => g.First().Hook((_, _) => first.TryAdd(g.First().Instance, first.Count))).ToList();
        try
        {
            Tensor batch = _calibration.Batches.FirstOrDefault()
                ?? throw new InvalidOperationException($"The CalibrationSet of {_who} holds no batches.");
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            Run(batch);
        }
        finally
        {
            foreach (IDisposable h in hooks) h.Dispose();
        }
        var missing = stages.Where(s => !first.ContainsKey(s.Instance)).Select(s => $"'{s.Module}'").Distinct().ToList();
        if (missing.Count > 0)
            throw new InvalidOperationException($"{string.Join(", ", missing)} never ran on a calibration batch, so {_who} cannot calibrate them. Layers see inputs only through Module.call (call them with layer.call(x), not layer.forward(x)).");
        return stages.OrderBy(s => first[s.Instance]).ThenBy(s => s.Layer).ToList();
    }

    /// <summary>
    /// The input covariance of each of <paramref name="weights"/> (of <paramref name="stage"/>) over the whole set;
    /// each batch stops at the stage's module. The caller disposes the results.
    /// </summary>
    public Dictionary<string, InputCovariance> Collect(CalibrationStage stage, IReadOnlyList<string> weights, Func<string, long> columns, bool diagonalOnly = false)
    {
        var covariances = weights.ToDictionary(n => n, n => new InputCovariance(n, columns(n), diagonalOnly));
        try
        {
            using var noGrad = torch.no_grad();
            using (stage.Hook((input, state) =>
            {
                stage.Record(input, state, covariances);
                throw new StopForward();
            }))
            {
                long batches = 0;
                foreach (Tensor batch in _calibration.Batches)
                {
                    if (batch is null) throw new InvalidOperationException($"The CalibrationSet of {_who} holds a null batch.");
                    using var scope = torch.NewDisposeScope();
                    try
                    {
                        Run(batch);
                    }
                    catch (StopForward)
                    {
                    }
                    batches++;
                }
                if (batches == 0) throw new InvalidOperationException($"The CalibrationSet of {_who} holds no batches.");
            }
            foreach (string name in weights)
                if (covariances[name].Rows == 0)
                    throw new InvalidOperationException($"'{stage.Module}' was not called during calibration, so '{name}' has no inputs. Layers see inputs only through Module.call.");
            return covariances;
        }
        catch
        {
            foreach (InputCovariance c in covariances.Values) c.Dispose();
            throw;
        }
    }

    private void Run(Tensor batch)
    {
        if (_calibration.Forward is { } forward) forward(batch);
        else ((nn.Module<Tensor, Tensor>)_model).call(batch);
    }

    /// <summary>Restores every module's training mode.</summary>
    public void Dispose()
    {
        foreach (var (module, training) in _modes) module.train(training);
    }

    /// <summary>Thrown from a calibration hook once the stage has its inputs: the rest of the forward is not needed.</summary>
    private sealed class StopForward : Exception;
}
