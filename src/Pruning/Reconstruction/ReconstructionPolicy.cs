using Pruning.Checkpoints;
using Pruning.Configuration;
using Pruning.Criteria;
using Pruning.Grouping;
using Pruning.Scheduling;
using Pruning.Selection;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Reconstruction;

/// <summary>
/// A mask policy that uses the inputs of each layer (H = XᵀX, accumulated in float64) to choose its mask, and may
/// rewrite the kept weights so that the layer's output changes as little as possible: <see cref="ObsPolicy"/>
/// (OBS / SparseGPT) and <see cref="WandaPolicy"/>. Give it to <see cref="GradualPruner"/> as
/// <see cref="PruningOptions.Policy"/>; the pruner hands it each mask update.
/// </summary>
/// <remarks>
/// <para>
/// With a <see cref="CalibrationSet"/>, each mask update calibrates sequentially, as SparseGPT does: layers are taken
/// in the order the model calls them, and each is calibrated on the outputs of the layers before it, as already
/// pruned; one layer's H is in memory at a time (d_in² doubles; a stacked LSTM layer holds two). With a
/// <see cref="OneShotSchedule"/> at step 0 and one call to <see cref="GradualPruner.Step"/>, this is one-shot pruning;
/// later steps fine-tune with the masks held.
/// </para>
/// <para>
/// Without one, H is gathered from the training forward passes of the last <see cref="WindowBatches"/> steps before
/// each update ("calibration on the recent batches"), for every pruned layer at once (Σ d_in² doubles), and saved in
/// the pruner's checkpoints.
/// </para>
/// <para>
/// Supported weights: Linear, Conv2d with groups 1 and zero padding (inputs are the unfolded patches), and the
/// weight_ih_lK/weight_hh_lK of unidirectional LSTM and GRU modules (inputs are the layer's input sequence and the
/// hidden state each step starts from). Layers see their inputs only through <c>Module.call</c>. A global scope is
/// refused: calibration prunes layer by layer, and saliencies scaled by each layer's own H do not rank across layers.
/// </para>
/// </remarks>
public abstract class ReconstructionPolicy : MaskPolicy, IPrunerState, IDisposable
{
    private readonly int _windowBatches = 16;
    private Binding? _binding;
    private readonly Dictionary<string, InputCovariance> _windows = [];

    private protected ReconstructionPolicy(CalibrationSet? calibration) => Calibration = calibration;

    /// <summary>The calibration inputs, or null to calibrate on the recent training batches.</summary>
    public CalibrationSet? Calibration { get; }

    /// <summary>Without a <see cref="Calibration"/>: how many training steps before each mask update feed H.</summary>
    /// <value>The default is 16.</value>
    /// <exception cref="ArgumentOutOfRangeException">The value is not positive.</exception>
    public int WindowBatches
    {
        get => _windowBatches;
        init
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(value, nameof(WindowBatches));
            _windowBatches = value;
        }
    }

    /// <summary>
    /// Chooses the mask of one weight (CPU float64 [rows, columns], contiguous) from its inputs' mean covariance
    /// ([columns, columns], or its diagonal [columns] when <see cref="NeedsFullCovariance"/> is false), and updates the
    /// weight in place with pruned entries zero.
    /// </summary>
    private protected abstract void Solve(Tensor weight, Tensor meanCovariance, WeightWindows windows, double target, ReadOnlyMemory<bool> previousKeep, bool[] keep);

    /// <summary>Whether <see cref="Solve"/> needs all of XᵀX (OBS) or only its diagonal (Wanda: d doubles per layer, not d²).</summary>
    private protected virtual bool NeedsFullCovariance => true;

    /// <summary>Attaches to the pruner's model: checks every pruned weight, and without a calibration set hooks the layers.</summary>
    internal override void Attach(nn.Module model, ResolvedPruning plan, Func<long> currentStep)
    {
        if (_binding is not null)
            throw new ArgumentException($"This {Config.Kind} already serves another pruner; create one policy per pruner.", "options");
        if (plan.Scope == PruningScope.Global)
            throw new ArgumentException($"{Config.Kind} calibrates and prunes layer by layer, so it cannot share a global ranking (PruningScope.Global); use PruningScope.LayerWise with per-layer FinalSparsity overrides.", "options");
        if (Calibration is not null && Calibration.Forward is null && model is not nn.Module<Tensor, Tensor>)
            throw new ArgumentException($"The model ({model.GetType().Name}) does not take one tensor, so the CalibrationSet needs a forward delegate that runs it on a batch.", "options");
        IReadOnlyList<CalibrationStage> stages;
        try
        {
            stages = CalibrationStage.For(model, plan.Parameters.Select(p => p.Name).ToList(), Config.Kind);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException(e.Bare(), "options", e);
        }
        foreach (ResolvedParameter p in plan.Parameters)
        {
            try
            {
                _ = new WeightWindows(p.Name, p.Shape, plan.Granularity);
            }
            catch (NotSupportedException e)
            {
                throw new ArgumentException($"PruningOptions.Granularity: {e.Message}", "options", e);
            }
        }
        var binding = new Binding(model, plan, currentStep, stages);
        if (Calibration is null)
            foreach (CalibrationStage stage in stages)
                binding.Hooks.Add(stage.Hook((input, state) => RecordWindow(stage, input, state)));
        _binding = binding;
    }

    /// <summary>Removes the hooks; the policy can serve another pruner afterwards.</summary>
    internal override void Detach()
    {
        if (_binding is null) return;
        foreach (IDisposable hook in _binding.Hooks) hook.Dispose();
        _binding = null;
    }

    /// <summary>Chooses the masks of the due weights (into their Keep arrays) and rewrites the weights.</summary>
    public override void Choose(MaskPolicyContext context, IReadOnlyList<DueWeight> due)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(due);
        Binding binding = _binding ?? throw new InvalidOperationException($"{Config.Kind} is not attached to a pruner.");
        using var noGrad = torch.no_grad();
        if (Calibration is null)
        {
            foreach (DueWeight d in due)
            {
                InputCovariance? window = _windows.GetValueOrDefault(d.Name);
                if (window is null || window.Rows == 0)
                    throw new InvalidOperationException($"No training forward pass reached '{d.Name}' in the {WindowBatches} steps before this mask update, so {Config.Kind} has no inputs to calibrate on. Run the model (in training mode, through Module.call) before each pruner.Step(), or give the criterion a CalibrationSet.");
                SolveAndWrite(binding, d, window);
                _windows.Remove(d.Name);
                window.Dispose();
            }
            return;
        }

        var byName = due.ToDictionary(d => d.Name);
        using var calibration = new SequentialCalibration(binding.Model, Calibration, Config.Kind);
        foreach (CalibrationStage stage in calibration.Order(binding.Stages))
        {
            var weights = stage.Parameters.Where(byName.ContainsKey).ToList();
            if (weights.Count == 0) continue;
            var covariances = calibration.Collect(stage, weights, n => Columns(binding, n), !NeedsFullCovariance);
            try
            {
                foreach (string name in weights) SolveAndWrite(binding, byName[name], covariances[name]);
            }
            finally
            {
                foreach (InputCovariance c in covariances.Values) c.Dispose();
            }
        }
    }

    private void SolveAndWrite(Binding binding, DueWeight due, InputCovariance covariance)
    {
        using var scope = torch.NewDisposeScope();
        Parameter parameter = binding.Weight(due.Name);
        long[] shape = parameter.shape;
        Tensor weight = parameter.detach().reshape(shape[0], -1).to(ScalarType.Float64, torch.CPU).contiguous().clone();
        if (!weight.isfinite().all().item<bool>())
            throw new InvalidOperationException($"'{due.Name}' holds NaN or infinite weights; {Config.Kind} cannot prune it.");
        Tensor mean = covariance.Mean();
        Solve(weight, mean, new WeightWindows(due.Name, shape, binding.Plan.Granularity), due.Target, due.PreviousKeep, due.Keep);
        parameter.copy_(weight.reshape(shape));
    }

    private static long Columns(Binding binding, string name)
    {
        long[] shape = binding.Weight(name).shape;
        return shape.Skip(1).Aggregate(1L, (a, b) => a * b);
    }

    /// <summary>Adds a training call's inputs to the windows of the weights whose next update is near.</summary>
    private void RecordWindow(CalibrationStage stage, Tensor input, object? state)
    {
        Binding? binding = _binding;
        if (binding is null || !stage.Instance.training) return;
        long step = binding.CurrentStep();
        var into = new Dictionary<string, InputCovariance>();
        foreach (string name in stage.Parameters)
        {
            ResolvedParameter p = binding.Plan.Parameters.First(q => q.Name == name);
            long next = p.Schedule.NextUpdateFrom(step);
            if (next == long.MaxValue || next - step >= WindowBatches) continue;
            if (!_windows.TryGetValue(name, out InputCovariance? window))
                _windows[name] = window = new InputCovariance(name, Columns(binding, name), !NeedsFullCovariance);
            into[name] = window;
        }
        if (into.Count == 0) return;
        using var noGrad = torch.no_grad();
        stage.Record(input, state, into);
    }

    /// <inheritdoc />
    public void SaveState(BinaryWriter writer) => StateEntries.Write(writer, _windows.Where(w => w.Value.Rows > 0), window =>
    {
        writer.Write(window.Rows);
        writer.Write(window.Columns);
        writer.Write(window.DiagonalOnly);
        StateEntries.WriteTensor(writer, window.Sum!);
    });

    /// <inheritdoc />
    public void LoadState(BinaryReader reader, IReadOnlyDictionary<string, Tensor> parameters)
    {
        string owner = Config.ToString();
        var loaded = StateEntries.Read(reader, parameters, owner, (name, parameter) =>
        {
            long rows = reader.ReadInt64(), columns = reader.ReadInt64();
            bool diagonal = reader.ReadBoolean();
            long expected = parameter.shape.Skip(1).Aggregate(1L, (a, b) => a * b);
            if (rows <= 0 || columns != expected || diagonal == NeedsFullCovariance)
                throw new InvalidDataException($"{owner}: the saved inputs of '{name}' are malformed ({rows} rows of {columns} columns, {(diagonal ? "diagonal" : "full")}; the weight takes {expected}).");
            Tensor sum = StateEntries.ReadTensor(reader, diagonal ? [columns] : [columns, columns], ScalarType.Float64, parameter.device, owner, $"inputs of '{name}'");
            var window = new InputCovariance(name, columns, diagonal);
            window.Restore(sum, rows);
            return window;
        }, window => window.Dispose());
        foreach (InputCovariance w in _windows.Values) w.Dispose();
        _windows.Clear();
        foreach (var (name, window) in loaded) _windows[name] = window;
    }

    /// <summary>The most bytes <see cref="SaveState"/> writes for these parameters: bounds what a checkpoint may hold.</summary>
    internal override long MaxStateBytes(IEnumerable<long[]> shapes) =>
        4 + shapes.Sum(s => { long d = s.Skip(1).Aggregate(1L, (a, b) => a * b); return 1024 + 17 + d * d * 8; });

    /// <summary>Removes the hooks and releases the gathered inputs.</summary>
    public void Dispose()
    {
        Detach();
        foreach (InputCovariance w in _windows.Values) w.Dispose();
        _windows.Clear();
        GC.SuppressFinalize(this);
    }

    private sealed class Binding(nn.Module model, ResolvedPruning plan, Func<long> currentStep, IReadOnlyList<CalibrationStage> stages)
    {
        public nn.Module Model { get; } = model;
        public ResolvedPruning Plan { get; } = plan;
        public Func<long> CurrentStep { get; } = currentStep;
        public IReadOnlyList<CalibrationStage> Stages { get; } = stages;
        public List<IDisposable> Hooks { get; } = [];

        public Parameter Weight(string name) => Model.get_parameter(name)
            ?? throw new InvalidOperationException($"The model no longer has a parameter named '{name}'.");
    }
}
