using System.Runtime.CompilerServices;
using Pruning.Sparse.Kernels;

namespace Pruning.Sparse.Sequences;

/// <summary>What the language models' runs share: the checks of tokens in and logits out, and the batch-first output.</summary>
internal static class TokenRuns
{
    /// <summary>Refuses sizes that are not positive and spans that do not hold [batch, steps] ids and [batch, steps, outputs] logits.</summary>
    internal static void Check(ReadOnlySpan<int> tokens, Span<float> logits, int batch, int steps, int outputs, int threads)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "Batch must be positive.");
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, "Steps must be positive.");
        ArgumentOutOfRangeException.ThrowIfNegative(threads);
        if (tokens.Length != (long)batch * steps)
            throw new ArgumentException($"Tokens must hold batch × steps = {(long)batch * steps} ids, got {tokens.Length}.", nameof(tokens));
        if (logits.Length != (long)batch * steps * outputs)
            throw new ArgumentException($"Logits must hold batch × steps × outputs = {(long)batch * steps * outputs} values, got {logits.Length}.", nameof(logits));
    }

    /// <summary>Feature-major [outputs, steps·batch] (column t·batch + n) → [batch, steps, outputs], one step's block at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void WriteBatchFirst(ReadOnlySpan<float> y, Span<float> logits, int batch, int steps, int outputs)
    {
        int columns = batch * steps;
        for (int t = 0; t < steps; t++)
            Transposition.Transpose(y[(t * batch)..], outputs, batch, columns, logits[(t * outputs)..], (long)steps * outputs);
    }
}
