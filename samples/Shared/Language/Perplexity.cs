namespace Pruning.Samples.Language;

/// <summary>Perplexity = exp(mean negative log-likelihood per predicted token), in nats.</summary>
public static class Perplexity
{
    /// <summary>exp(<paramref name="totalNll"/> / <paramref name="tokens"/>).</summary>
    public static double FromTotalNll(double totalNll, long tokens)
    {
        if (tokens <= 0) throw new ArgumentOutOfRangeException(nameof(tokens), tokens, "Perplexity needs at least one token.");
        if (double.IsNaN(totalNll) || totalNll < 0) throw new ArgumentOutOfRangeException(nameof(totalNll), totalNll, "A negative log-likelihood is ≥ 0.");
        return Math.Exp(totalNll / tokens);
    }

    /// <summary>The summed NLL of <paramref name="targets"/> under row-wise softmax of <paramref name="logits"/> [tokens, vocabulary].</summary>
    public static double TotalNll(ReadOnlySpan<float> logits, ReadOnlySpan<long> targets, int vocabulary)
    {
        if (logits.Length != (long)targets.Length * vocabulary) throw new ArgumentException($"Expected {targets.Length} × {vocabulary} logits, got {logits.Length}.", nameof(logits));
        double total = 0;
        for (int t = 0; t < targets.Length; t++)
        {
            ReadOnlySpan<float> row = logits.Slice(t * vocabulary, vocabulary);
            double max = double.NegativeInfinity;
            foreach (float v in row) max = Math.Max(max, v);
            double sum = 0;
            foreach (float v in row) sum += Math.Exp(v - max);
            long target = targets[t];
            if (target < 0 || target >= vocabulary) throw new ArgumentOutOfRangeException(nameof(targets), target, $"Target {t} is outside the vocabulary.");
            total += Math.Log(sum) + max - row[(int)target];
        }
        return total;
    }

    /// <summary>
    /// A token stream cut into <paramref name="streams"/> contiguous rows and read side by side in windows of up to
    /// <paramref name="window"/> steps: per window the inputs [streams, n] (as ids), the next tokens [streams, n], and n.
    /// </summary>
    public static IEnumerable<(int[] X, long[] Y, int Steps)> Windows(long[] tokens, int streams, int window)
    {
        int length = tokens.Length / streams;
        for (int i = 0; i + 1 < length; i += window)
        {
            int n = Math.Min(window, length - 1 - i);
            var x = new int[streams * n];
            var y = new long[streams * n];
            for (int s = 0; s < streams; s++)
                for (int t = 0; t < n; t++)
                {
                    x[s * n + t] = (int)tokens[s * length + i + t];
                    y[s * n + t] = tokens[s * length + i + t + 1];
                }
            yield return (x, y, n);
        }
    }
}
