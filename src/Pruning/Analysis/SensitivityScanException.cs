namespace Pruning.Analysis;

/// <summary>The evaluation callback failed during a sensitivity scan (the weights were restored).</summary>
public sealed class SensitivityScanException(string message, Exception? inner = null) : Exception(message, inner);
