namespace Pruning.Samples.Language;

/// <summary>
/// The count baseline a neural language model must beat: a word trigram model with interpolated absolute discounting
/// (each order keeps its counts less a discount of 0.75 and gives the rest to the next lower order; add-one unigrams
/// at the bottom, so every word has a probability).
/// </summary>
internal sealed class TrigramModel
{
    private const double Discount = 0.75;
    private readonly int _vocabulary;
    private readonly long _total;
    private readonly long[] _unigrams;
    private readonly Dictionary<long, long> _bigrams = [], _trigrams = [];
    // Per context: the count of every continuation and how many distinct words follow it.
    private readonly Dictionary<long, (long Count, int Types)> _afterWord = [], _afterPair = [];

    public TrigramModel(long[] tokens, int vocabulary)
    {
        _vocabulary = vocabulary;
        _unigrams = new long[vocabulary];
        foreach (long t in tokens) _unigrams[t]++;
        _total = tokens.Length;
        for (int i = 1; i < tokens.Length; i++)
            if (Increment(_bigrams, tokens[i - 1] * vocabulary + tokens[i])) Types(_afterWord, tokens[i - 1]);
            else Count(_afterWord, tokens[i - 1]);
        for (int i = 2; i < tokens.Length; i++)
        {
            long pair = tokens[i - 2] * vocabulary + tokens[i - 1];
            if (Increment(_trigrams, pair * vocabulary + tokens[i])) Types(_afterPair, pair);
            else Count(_afterPair, pair);
        }
    }

    /// <summary>Perplexity over a token stream, every word after the first two predicted from the two before it.</summary>
    public double Perplexity(long[] tokens)
    {
        double total = 0;
        for (int i = 2; i < tokens.Length; i++) total -= Math.Log(Probability(tokens[i - 2], tokens[i - 1], tokens[i]));
        return Language.Perplexity.FromTotalNll(total, tokens.Length - 2);
    }

    private double Probability(long u, long v, long w)
    {
        double p = (_unigrams[w] + 1.0) / (_total + _vocabulary);
        p = Interpolate(_afterWord, v, _bigrams.GetValueOrDefault(v * _vocabulary + w), p);
        long pair = u * _vocabulary + v;
        return Interpolate(_afterPair, pair, _trigrams.GetValueOrDefault(pair * _vocabulary + w), p);
    }

    private static double Interpolate(Dictionary<long, (long Count, int Types)> contexts, long context, long count, double lower)
    {
        if (!contexts.TryGetValue(context, out var c)) return lower;
        return (Math.Max(count - Discount, 0) + Discount * c.Types * lower) / c.Count;
    }

    /// <summary>Counts one occurrence; true when it is the first.</summary>
    private static bool Increment(Dictionary<long, long> counts, long key)
    {
        counts[key] = counts.GetValueOrDefault(key) + 1;
        return counts[key] == 1;
    }

    private static void Types(Dictionary<long, (long Count, int Types)> contexts, long context)
    {
        var c = contexts.GetValueOrDefault(context);
        contexts[context] = (c.Count + 1, c.Types + 1);
    }

    private static void Count(Dictionary<long, (long Count, int Types)> contexts, long context)
    {
        var c = contexts.GetValueOrDefault(context);
        contexts[context] = (c.Count + 1, c.Types);
    }
}
