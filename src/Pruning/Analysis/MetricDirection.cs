namespace Pruning.Analysis;

/// <summary>Whether a larger metric is better (accuracy) or worse (loss, perplexity).</summary>
public enum MetricDirection
{
    /// <summary>Accuracy-like: a drop is baseline − value.</summary>
    HigherIsBetter,

    /// <summary>Loss-like: a drop is value − baseline.</summary>
    LowerIsBetter,
}
