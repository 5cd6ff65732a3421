namespace LargeSparseVsSmallDense.Harness;

/// <summary>
/// Matching memory budgets: a dense model's count of prunable weights (all weight matrices and filters; biases and
/// BatchNorm parameters are not pruned and are reported separately) is the budget a larger model is pruned to.
/// </summary>
public static class NnzBudget
{
    /// <summary>Prunable weights of the MLP 784 → w → w → 10.</summary>
    public static long MlpWeights(int width) => 784L * width + (long)width * width + 10L * width;

    /// <summary>Prunable weights of the CNN at width multiplier α: conv 1→c1, c1→c2, c2→c3 (3×3), Linear c3→10; c = round(α·(32, 64, 128)).</summary>
    public static long CnnWeights(double alpha)
    {
        var (c1, c2, c3) = CnnChannels(alpha);
        return 9L * c1 + 9L * c1 * c2 + 9L * c2 * c3 + 10L * c3;
    }

    /// <summary>The CNN's channel counts at width multiplier α.</summary>
    public static (int C1, int C2, int C3) CnnChannels(double alpha) =>
        ((int)Math.Round(32 * alpha), (int)Math.Round(64 * alpha), (int)Math.Round(128 * alpha));

    /// <summary>Prunable weights of the LSTM LM: embedding V×h, L layers of 4h×h input and 4h×h recurrent weights, softmax h×V.</summary>
    public static long LstmWeights(int vocabulary, int hidden, int layers) =>
        2L * vocabulary * hidden + layers * 8L * hidden * hidden;

    /// <summary>
    /// Prunable weights of the transformer LM at model dimension d: token embedding V×d, position embedding context×d,
    /// per block q/k/v/output 4d² and MLP 2·4d², decoder d×V (LayerNorm gains and biases are one-dimensional).
    /// </summary>
    public static long TransformerWeights(int vocabulary, int dimension, int layers, int context) =>
        2L * vocabulary * dimension + (long)context * dimension + layers * 12L * dimension * dimension;

    /// <summary>The sparsity at which <paramref name="weights"/> keep exactly <paramref name="budget"/> non-zeros.</summary>
    public static double SparsityFor(long budget, long weights)
    {
        if (budget <= 0 || budget > weights) throw new ArgumentOutOfRangeException(nameof(budget), budget, $"The budget must be in [1, {weights}].");
        return 1.0 - (double)budget / weights;
    }
}
