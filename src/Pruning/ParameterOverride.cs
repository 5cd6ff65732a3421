using Pruning.Scheduling;
using Pruning.Selection;

namespace Pruning;

/// <summary>
/// One parameter's own settings in <see cref="PruningOptions.Overrides"/>. Give it a schedule of its own, or a final
/// sparsity of its own on the shared schedule (as Distiller and SparseML recipes allow), not both; and, with either
/// or on its own, bounds on its sparsity.
/// </summary>
/// <example><c>Overrides = new Dictionary&lt;string, ParameterOverride&gt; { ["fc3.weight"] = new() { FinalSparsity = 0.5 } }</c></example>
public sealed record ParameterOverride
{
    private readonly double? _finalSparsity;

    /// <summary>A schedule that replaces <see cref="PruningOptions.Schedule"/> for this parameter. Layer-wise scope only.</summary>
    public PruningSchedule? Schedule { get; init; }

    /// <summary>This parameter's final sparsity on the shared schedule, in [0, 1). Layer-wise scope only.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is outside [0, 1).</exception>
    public double? FinalSparsity
    {
        get => _finalSparsity;
        init
        {
            if (value is double v && (double.IsNaN(v) || v < 0 || v >= 1))
                throw new ArgumentOutOfRangeException(nameof(FinalSparsity), v, $"FinalSparsity must be in [0, 1); got {v}.");
            _finalSparsity = value;
        }
    }

    /// <summary>
    /// Bounds on this parameter's sparsity. Layer-wise, its target is clamped into them. Under
    /// <see cref="PruningScope.Global"/>, the ranking is constrained: the parameter never ends outside its range and
    /// the model-wide count stays exact while the bounds allow it.
    /// </summary>
    public SparsityRange? Bounds { get; init; }

    /// <summary>
    /// One final sparsity per parameter (e.g. <see cref="Analysis.SensitivityResult.SparsitiesForTotal"/>'s result) as
    /// overrides for <see cref="PruningOptions.Overrides"/>.
    /// </summary>
    public static IReadOnlyDictionary<string, ParameterOverride> FinalSparsities(IReadOnlyDictionary<string, double> sparsities)
    {
        ArgumentNullException.ThrowIfNull(sparsities);
        return sparsities.ToDictionary(s => s.Key, s => new ParameterOverride { FinalSparsity = s.Value });
    }
}
