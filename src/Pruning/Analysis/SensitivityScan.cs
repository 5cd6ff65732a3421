using System.Globalization;
using Pruning.Criteria;
using Pruning.Interop;
using Pruning.Masks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Analysis;

/// <summary>
/// Sensitivity analysis (MIT 6.5940 lecture 6; Han et al. 2015): prune one layer at a time to each ratio, evaluate,
/// and restore the weights bit for bit. The curves show which layers tolerate pruning; <see cref="SensitivityResult"/>
/// turns them into per-layer final sparsities for the cubic schedule.
/// </summary>
/// <remarks>
/// Blind spot: each layer is probed with all others dense, so interactions between layers are not seen; pruning
/// two tolerant layers together can hurt more than their curves add up to. Global magnitude ranking
/// (<see cref="Selection.PruningScope.Global"/>) is the alternative that allocates across layers without this
/// assumption (but also without looking at the metric).
/// </remarks>
public static class SensitivityScan
{
    /// <summary>
    /// Runs the scan. <paramref name="evaluate"/> is called once for the baseline and once per layer and ratio, with
    /// the model in its probed state; it must not train the model. The model's parameters are exactly as before when
    /// this returns or throws.
    /// </summary>
    /// <exception cref="ArgumentException">Empty ratio list, a ratio outside [0, 1), a criterion that needs gradients,
    /// or a granularity that does not fit a layer.</exception>
    /// <exception cref="SensitivityScanException">The callback threw or returned a non-finite value; names the layer and ratio.</exception>
    public static SensitivityResult Run(nn.Module model, Func<nn.Module, double> evaluate, SensitivityOptions? options = null)
    {
        TorchHealth.EnsureOnFirstUse();
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(evaluate);
        options ??= new SensitivityOptions();
        if (options.Ratios is null) throw new ArgumentException("SensitivityOptions.Ratios is null.", nameof(options));
        if (options.Ratios.Count == 0) throw new ArgumentException("The ratio list is empty; give at least one ratio in [0, 1).", nameof(options));
        foreach (double r in options.Ratios)
            if (double.IsNaN(r) || r < 0 || r >= 1)
                throw new ArgumentException($"Ratio {r.ToString(CultureInfo.InvariantCulture)} is outside [0, 1).", nameof(options));
        if (options.Criterion is IAccumulatingCriterion)
            throw new ArgumentException($"{options.Criterion.GetType().Name} learns from gradients during training; a sensitivity scan needs a criterion that scores the weights alone, such as MagnitudeCriterion.", nameof(options));
        double[] ratios = options.Ratios.Distinct().Order().ToArray();
        ResolvedPruning plan;
        try
        {
            plan = options.Resolve(model);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException(e.Bare().Replace("PruningOptions.", "SensitivityOptions.", StringComparison.Ordinal), nameof(options), e);
        }

        double baseline = Evaluate(evaluate, model, "the baseline", null);
        var layers = new List<LayerSensitivity>();
        using var session = new MaskSession(model, plan, () => 0);
        foreach (ResolvedParameter parameter in plan.Parameters)
        {
            var points = new List<(double, double)>();
            foreach (double ratio in ratios)
                using (session.Probe(new Dictionary<string, double> { [parameter.Name] = ratio }))
                    points.Add((ratio, Evaluate(evaluate, model, parameter.Name, ratio)));
            layers.Add(new LayerSensitivity(parameter.Name, parameter.Count, points));
        }
        return new SensitivityResult(baseline, options.Direction, layers);
    }

    private static double Evaluate(Func<nn.Module, double> evaluate, nn.Module model, string layer, double? ratio)
    {
        double value;
        try
        {
            value = evaluate(model);
        }
        catch (Exception e)
        {
            throw new SensitivityScanException(ratio is null ? $"The evaluation callback failed on {layer}: {e.Message}"
                : $"The evaluation callback failed with '{layer}' pruned to {ratio.Value.ToString(CultureInfo.InvariantCulture)}: {e.Message}", e);
        }
        if (!double.IsFinite(value))
            throw new SensitivityScanException($"The evaluation callback returned {value} for {(ratio is null ? layer : $"'{layer}' at {ratio.Value.ToString(CultureInfo.InvariantCulture)}")}; the metric must be finite.");
        return value;
    }
}
