using System.Runtime.CompilerServices;
namespace Pruning.Sparse.Sequences;

/// <summary>Which GELU a transformer's MLP applies, as PyTorch's <c>approximate</c> argument names them.</summary>
public enum GeluApproximation : byte
{
    /// <summary>x·Φ(x) with the exact normal CDF: 0.5·x·(1 + erf(x/√2)).</summary>
    None = 0,

    /// <summary>0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).</summary>
    Tanh = 1,
}

/// <summary>The GELU activations, in place over a span.</summary>
internal static class Gelu
{
    private const double InverseSqrt2 = 0.70710678118654752440, SqrtTwoOverPi = 0.79788456080286535588;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Apply(Span<float> values, GeluApproximation approximation)
    {
        if (approximation == GeluApproximation.Tanh)
            for (int i = 0; i < values.Length; i++)
            {
                double x = values[i];
                values[i] = (float)(0.5 * x * (1 + Math.Tanh(SqrtTwoOverPi * (x + 0.044715 * x * x * x))));
            }
        else
            for (int i = 0; i < values.Length; i++)
            {
                double x = values[i];
                values[i] = (float)(0.5 * x * (2 - Erfc(x * InverseSqrt2)));
            }
    }

    /// <summary>
    /// The complementary error function, from the Chebyshev-fitted exponential form (fractional error below 1.2e-7 for
    /// every argument, far below float's resolution of GELU's result). NaN stays NaN.
    /// </summary>
    internal static double Erfc(double x)
    {
        double z = Math.Abs(x), t = 1 / (1 + 0.5 * z);
        double polynomial = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
            + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
        double result = t * Math.Exp(-z * z + polynomial);
        return x >= 0 ? result : x < 0 ? 2 - result : double.NaN;
    }
}
