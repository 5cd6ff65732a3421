using System.Runtime.CompilerServices;
using Pruning.Sparse.Matrices;

namespace Pruning.Sparse.Sequences;

/// <summary>A token → vector table [vocabulary, dimension], dense or CSR (a pruned embedding keeps its zeros).</summary>
public sealed class EmbeddingLayer
{
    /// <summary>Creates the layer over <paramref name="table"/>, one row per token id.</summary>
    public EmbeddingLayer(WeightMatrix table) => Table = table ?? throw new ArgumentNullException(nameof(table));

    /// <summary>The table: row t is token t's vector.</summary>
    public WeightMatrix Table { get; }

    /// <summary>Token ids are in [0, Vocabulary).</summary>
    public int Vocabulary => Table.Rows;

    /// <summary>The length of each token's vector.</summary>
    public int Dimension => Table.Cols;

    /// <summary>
    /// Looks up <paramref name="tokens"/> ([batch, steps], batch-first) into <paramref name="output"/>, feature-major
    /// [Dimension, steps·batch] with column t·batch + n for step t of sequence n.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A token id is outside [0, Vocabulary); names its position.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void Lookup(ReadOnlySpan<int> tokens, int batch, int steps, Span<float> output, Span<float> row)
    {
        int columns = batch * steps;
        for (int n = 0; n < batch; n++)
            for (int t = 0; t < steps; t++)
            {
                int token = tokens[n * steps + t];
                if ((uint)token >= (uint)Vocabulary)
                    throw new ArgumentOutOfRangeException("tokens", token, $"Token {token} (sequence {n}, step {t}) is outside the vocabulary [0, {Vocabulary}).");
                Table.ReadRow(token, row);
                int column = t * batch + n;
                for (int e = 0; e < Dimension; e++) output[e * columns + column] = row[e];
            }
    }

    /// <summary>"Embedding 10000×256 (CSR, 90.0 % sparse)".</summary>
    public string Describe() => $"Embedding {Vocabulary}×{Dimension} ({Layers.SparseLayer.Format(Table)})";
}
