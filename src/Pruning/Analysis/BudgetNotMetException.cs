namespace Pruning.Analysis;

/// <summary>A sparsity, parameter or latency budget that cannot be met with what was measured.</summary>
public sealed class BudgetNotMetException(string message) : Exception(message);
