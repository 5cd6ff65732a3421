namespace Pruning.Interop;

/// <summary>One known-answer check of <see cref="TorchHealth"/>: libtorch's float32 result against our double-precision answer.</summary>
/// <param name="Check">What was computed, with its shape.</param>
/// <param name="Component">The libtorch component that computed it (oneDNN, MKL or ATen's own kernels), as routed when it ran.</param>
/// <param name="RelativeError">The largest error over the largest |answer|; infinite when it threw or returned NaN.</param>
/// <param name="Exception">The exception's message when libtorch threw; null otherwise.</param>
public sealed record TorchHealthResult(string Check, string Component, double RelativeError, string? Exception = null)
{
    /// <summary>The largest relative error a check may show: float32 rounding stays below 1e-6 on these sums.</summary>
    public const double Tolerance = KnownAnswer.Tolerance;

    /// <summary>Whether libtorch's result is within <see cref="Tolerance"/> of the answer.</summary>
    public bool Passed => RelativeError <= Tolerance;

    /// <summary>E.g. "conv2d 5×5, batch 1, 17→16 channels, 9×9: 1.4E-001 of the range (oneDNN JIT convolution …)".</summary>
    public override string ToString() => Exception is null
        ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{Check}: {RelativeError:0.0E+000} of the range ({Component})")
        : $"{Check}: threw {Exception} ({Component})";
}
