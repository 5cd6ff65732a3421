using System.Runtime.CompilerServices;
using System.Text;
using Pruning.Sparse.Kernels;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Serialization;

namespace Pruning.Sparse.Sequences;

/// <summary>
/// A decoder-only transformer language model for standalone inference: token embedding + position embedding →
/// <see cref="TransformerBlock"/>s → optional final LayerNorm → a Linear decoder (its weight may be the token
/// embedding's table: tied). Inputs are batch-first [batch, steps] token ids, outputs [batch, steps, outputs] logits.
/// An <see cref="AttentionCache"/> carries the keys and values of earlier tokens, so <see cref="Step"/> computes only the
/// new token's projections (what generation needs); a run without a cache starts new sequences at position 0.
/// Runs of one model take turns; its working buffers are bounded by <see cref="SparseModelOptions.MaxBufferBytes"/>.
/// </summary>
public sealed class TransformerModel
{
    private readonly object _gate = new();
    private Buffers? _buffers;

    /// <summary>Creates the model and checks that the pieces fit together and that one token of one sequence, with a full cache, fits the memory budget.</summary>
    /// <param name="tokens">Token id → vector [vocabulary, d].</param>
    /// <param name="positions">Position → vector [context, d]: learned, or a sinusoidal table computed once. Its rows are the context.</param>
    /// <param name="blocks">The layers, bottom first.</param>
    /// <param name="finalNorm">The LayerNorm before the decoder (pre-LN models have one), or null.</param>
    /// <param name="decoder">[outputs, d]; tied when its weight is <paramref name="tokens"/>' table object.</param>
    /// <param name="options">Limits; the default budget when null.</param>
    /// <exception cref="ArgumentException">Sizes do not chain (the argument is named), or one token needs more memory than <paramref name="options"/> allow.</exception>
    public TransformerModel(EmbeddingLayer tokens, EmbeddingLayer positions, IEnumerable<TransformerBlock> blocks, LayerNorm? finalNorm, LinearLayer decoder,
        SparseModelOptions? options = null)
    {
        Tokens = tokens ?? throw new ArgumentNullException(nameof(tokens));
        Positions = positions ?? throw new ArgumentNullException(nameof(positions));
        ArgumentNullException.ThrowIfNull(blocks);
        Decoder = decoder ?? throw new ArgumentNullException(nameof(decoder));
        Blocks = blocks.ToArray();
        FinalNorm = finalNorm;
        Options = options ?? SparseModelOptions.Default;
        Options.Validate();
        int d = tokens.Dimension;
        if (positions.Dimension != d)
            throw new ArgumentException($"Position vectors have {positions.Dimension} features, token vectors {d}.", nameof(positions));
        if (Blocks.Count == 0) throw new ArgumentException("A transformer needs at least one block.", nameof(blocks));
        for (int l = 0; l < Blocks.Count; l++)
        {
            if (Blocks[l] is null) throw new ArgumentException($"Block {l} is null.", nameof(blocks));
            if (Blocks[l].Dimension != d) throw new ArgumentException($"Block {l} ({Blocks[l].Describe()}) has {Blocks[l].Dimension} features, the embedding {d}.", nameof(blocks));
            if (Blocks[l].Heads != Blocks[0].Heads) throw new ArgumentException($"Block {l} has {Blocks[l].Heads} heads, block 0 {Blocks[0].Heads}; the cache needs one head count.", nameof(blocks));
        }
        if (finalNorm is not null && finalNorm.Dimension != d)
            throw new ArgumentException($"The final LayerNorm has {finalNorm.Dimension} features, the model {d}.", nameof(finalNorm));
        if (decoder.Weight.Cols != d)
            throw new ArgumentException($"The decoder ({decoder.Describe()}) takes {decoder.Weight.Cols} features but the model gives {d}.", nameof(decoder));
        long needed = BufferBytes(1, 1), cache = AttentionCache.Bytes(Blocks.Count, 1, d, Context);
        if (needed > Options.MaxBufferBytes || cache > Options.MaxBufferBytes - needed)
            throw new ArgumentException($"One token of one sequence needs {needed:N0} bytes of working memory and a full cache {cache:N0}, more than the budget of {Options.MaxBufferBytes:N0} (SparseModelOptions.MaxBufferBytes).", nameof(options));
    }

    /// <summary>The token embedding.</summary>
    public EmbeddingLayer Tokens { get; }

    /// <summary>The position embedding; its rows are the context.</summary>
    public EmbeddingLayer Positions { get; }

    /// <summary>The blocks, bottom first.</summary>
    public IReadOnlyList<TransformerBlock> Blocks { get; }

    /// <summary>The LayerNorm before the decoder, or null.</summary>
    public LayerNorm? FinalNorm { get; }

    /// <summary>The decoder applied at every position.</summary>
    public LinearLayer Decoder { get; }

    /// <summary>Whether the decoder's weight is the token embedding's table.</summary>
    public bool Tied => ReferenceEquals(Decoder.Weight, Tokens.Table);

    /// <summary>The limits this model keeps to.</summary>
    public SparseModelOptions Options { get; }

    /// <summary>Features per token.</summary>
    public int Dimension => Tokens.Dimension;

    /// <summary>Attention heads per block.</summary>
    public int Heads => Blocks[0].Heads;

    /// <summary>Positions a sequence can have.</summary>
    public int Context => Positions.Vocabulary;

    /// <summary>Logits per position.</summary>
    public int Outputs => Decoder.Weight.Rows;

    /// <summary>Weights and biases stored (a tied table once).</summary>
    public long StoredParameters => Tokens.Table.StoredEntries + Positions.Table.StoredEntries + Blocks.Sum(b => b.StoredParameters)
        + (FinalNorm?.StoredParameters ?? 0) + (Tied ? 0 : Decoder.Weight.StoredEntries) + Decoder.Bias.Length;

    /// <summary>A cache for <paramref name="batch"/> sequences of up to <see cref="Context"/> positions.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The cache would hold more than <see cref="SparseModelOptions.MaxBufferBytes"/>.</exception>
    public AttentionCache NewCache(int batch)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        long bytes = AttentionCache.Bytes(Blocks.Count, batch, Dimension, Context);
        if (bytes > Options.MaxBufferBytes)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, $"A cache for {batch} sequences of {Context} positions holds {bytes:N0} bytes, more than the budget of {Options.MaxBufferBytes:N0} (SparseModelOptions.MaxBufferBytes).");
        return new AttentionCache(Blocks.Count, batch, Heads, Dimension / Heads, Context);
    }

    /// <summary>The working memory a run of <paramref name="batch"/> sequences of <paramref name="steps"/> new tokens allocates, in bytes, with the keys and values of a run without a cache (<see cref="long.MaxValue"/> when it overflows).</summary>
    public long BufferBytes(int batch, int steps)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(steps, 1);
        try
        {
            long columns = checked((long)batch * steps);
            long hidden = Blocks.Max(b => (long)b.Hidden);
            // The residual stream, its normalized copy, a projection's output, q/k/v, the MLP, the logits, LayerNorm
            // statistics; the keys and values of a run without a cache (2 per layer and feature); 2·d for the embedding
            // row (one is allocated, read for the token and then for its position); one attention slot per thread.
            long values = checked((6L * Dimension + hidden + Outputs + 2 + 2L * Blocks.Count * Dimension) * columns + 2L * Dimension
                + (long)WorkerPool.Shared.Slots * AttentionSlot(Context));
            return checked(values * sizeof(float));
        }
        catch (OverflowException)
        {
            return long.MaxValue;
        }
    }

    private int AttentionSlot(int positions) => 2 * (Dimension / Heads) + positions;

    /// <summary>
    /// Runs <paramref name="batch"/> sequences of <paramref name="steps"/> tokens: <paramref name="tokens"/> is
    /// [batch, steps] (batch-first), <paramref name="logits"/> receives [batch, steps, <see cref="Outputs"/>]. With a
    /// <paramref name="cache"/> the tokens continue the sequences it holds (at positions cache.Length + t) and it is
    /// left holding them too; without one they start at position 0.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A token id is outside the vocabulary (names its sequence and step), the
    /// sequences would pass the context, or the run needs more memory than the budget.</exception>
    /// <exception cref="ArgumentException">A span has the wrong length, or the cache is for another batch size or model.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Run(ReadOnlySpan<int> tokens, Span<float> logits, int batch, int steps, AttentionCache? cache = null, int threads = 0)
    {
        TokenRuns.Check(tokens, logits, batch, steps, Outputs, threads);
        if (cache is not null && (cache.Batch != batch || cache.Layers != Blocks.Count || cache.Heads != Heads || cache.HeadSize != Dimension / Heads || cache.Capacity > Context))
            throw new ArgumentException($"The cache is for {cache.Batch} sequences of another shape; this run has {batch} sequences (make it with NewCache).", nameof(cache));
        int past = cache?.Length ?? 0;
        if (steps > Context - past)
            throw new ArgumentOutOfRangeException(nameof(steps), steps, $"{past} cached and {steps} new positions pass the model's context of {Context}.");
        lock (_gate)
        {
            Buffers b = BuffersFor(batch, steps);
            cache ??= b.ScratchCache(this, batch, steps);
            int columns = batch * steps, d = Dimension;
            Span<float> x = b.Stream.AsSpan(0, d * columns);
            Tokens.Lookup(tokens, batch, steps, x, b.Row);
            for (int t = 0; t < steps; t++)
            {
                Positions.Table.ReadRow(past + t, b.Row);
                for (int e = 0; e < d; e++)
                {
                    Span<float> line = x.Slice(e * columns + t * batch, batch);
                    for (int n = 0; n < batch; n++) line[n] += b.Row[e];
                }
            }
            for (int l = 0; l < Blocks.Count; l++) Blocks[l].Forward(b.Stream, b, batch, steps, cache, l, threads);
            cache.Length = past + steps;
            Span<float> h = x;
            if (FinalNorm is not null)
            {
                h = b.Normed.AsSpan(0, d * columns);
                FinalNorm.Forward(x, h, columns, b.Statistics);
            }
            Span<float> y = b.Logits.AsSpan(0, Outputs * columns);
            Decoder.Weight.Multiply(h, y, columns, Decoder.Bias, threads);
            TokenRuns.WriteBatchFirst(y, logits, batch, steps, Outputs);
        }
    }

    /// <summary>Convenience: runs the sequences and returns new logits.</summary>
    public float[] Run(int[] tokens, int batch, int steps, AttentionCache? cache = null, int threads = 0)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        var logits = new float[(long)batch * steps * Outputs];
        Run(tokens, logits, batch, steps, cache, threads);
        return logits;
    }

    /// <summary>One token per sequence: <paramref name="tokens"/> [batch] in, <paramref name="logits"/> [batch, outputs] out, <paramref name="cache"/> advanced by one position.</summary>
    public void Step(ReadOnlySpan<int> tokens, Span<float> logits, AttentionCache cache, int threads = 0)
    {
        ArgumentNullException.ThrowIfNull(cache);
        Run(tokens, logits, cache.Batch, 1, cache, threads);
    }

    /// <summary>A table of the pieces and their storage.</summary>
    public string Describe()
    {
        var text = new StringBuilder();
        text.AppendLine(Tokens.Describe());
        text.AppendLine($"Positions {Context}×{Dimension} ({SparseLayer.Format(Positions.Table)})");
        foreach (TransformerBlock block in Blocks) text.AppendLine(block.Describe());
        if (FinalNorm is not null) text.AppendLine($"LayerNorm {Dimension}");
        text.AppendLine(Tied ? $"Decoder tied to the token embedding{(Decoder.Bias.IsEmpty ? "" : ", with bias")}" : Decoder.Describe());
        text.Append($"total {StoredParameters:N0} stored parameters");
        return text.ToString();
    }

    private Buffers BuffersFor(int batch, int steps)
    {
        if (_buffers is { } cached && cached.Columns >= (long)batch * steps) return cached;
        long needed = BufferBytes(batch, steps);
        if (needed > Options.MaxBufferBytes)
            throw new ArgumentOutOfRangeException(nameof(batch), batch,
                $"{batch} sequences of {steps} steps need {needed:N0} bytes of working memory, more than the budget of {Options.MaxBufferBytes:N0} (SparseModelOptions.MaxBufferBytes); run fewer or shorter sequences, or raise the budget.");
        long columns = (long)batch * steps;
        long widest = Math.Max(3L * Dimension, Math.Max(Blocks.Max(b => (long)b.Hidden), Outputs)) * columns;
        if (widest > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, $"{batch} sequences of {steps} steps need more than {Array.MaxLength} values in one buffer; run fewer or shorter sequences.");
        _buffers = null;
        int slot = AttentionSlot(Context);
        _buffers = new Buffers((int)columns, new float[Dimension * columns], new float[Dimension * columns], new float[Dimension * columns],
            new float[3 * Dimension * columns], new float[Blocks.Max(b => b.Hidden) * columns], new float[Outputs * columns], new float[2 * columns],
            new float[Dimension], new float[(long)WorkerPool.Shared.Slots * slot], slot);
        return _buffers;
    }

    /// <summary>The working arrays of one run: the residual stream, its normalized copy (also the attention's output), a projection's output, q/k/v, the MLP's hidden values, the logits, LayerNorm statistics, one embedding row, per-thread attention scratch; and the cache of runs without one.</summary>
    internal sealed record Buffers(int Columns, float[] Stream, float[] Normed, float[] Output, float[] QueryKeyValue, float[] Hidden, float[] Logits,
        float[] Statistics, float[] Row, float[] Attention, int AttentionSlotFloats)
    {
        private AttentionCache? _scratch;

        /// <summary>An empty cache for runs without one (reused: the caller does not see it).</summary>
        public AttentionCache ScratchCache(TransformerModel model, int batch, int steps)
        {
            if (_scratch is null || _scratch.Batch != batch || _scratch.Capacity < steps)
            {
                _scratch = null;
                _scratch = new AttentionCache(model.Blocks.Count, batch, model.Heads, model.Dimension / model.Heads, steps);
            }
            else _scratch.Reset();
            return _scratch;
        }
    }

    /// <summary>
    /// Loads the model in <paramref name="path"/> (.ptf, magic <c>PRNSPTFM</c>). The file is untrusted: its checksum is
    /// verified before parsing, every count is checked against the bytes left before anything is allocated, and the
    /// model's working memory must fit <see cref="SparseModelOptions.MaxBufferBytes"/>; any problem is a
    /// <see cref="SparseModelFormatException"/> naming the file.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="options">Limits for the loaded model (the default budget when null).</param>
    /// <exception cref="FileNotFoundException">There is no such file.</exception>
    /// <exception cref="SparseModelFormatException">The file is not a valid transformer model, or the model needs more working memory than allowed.</exception>
    public static TransformerModel Load(string path, SparseModelOptions? options = null) => TransformerModelFile.Load(path, options);

    /// <summary>Reads a model from its file bytes (as <see cref="Load"/> checks them); <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="SparseModelFormatException">The bytes are not a valid transformer model, or the model needs more working memory than allowed.</exception>
    public static TransformerModel Read(ReadOnlySpan<byte> bytes, string source = "bytes", SparseModelOptions? options = null) => TransformerModelFile.Read(bytes, source, options);

    /// <summary>Writes the model to <paramref name="path"/> (.ptf) atomically: a temporary file, then a rename, so a crash never leaves half a file.</summary>
    public void Save(string path) => TransformerModelFile.Save(this, path);

    /// <summary>The model's file bytes, as <see cref="Save"/> writes them.</summary>
    public byte[] ToBytes() => TransformerModelFile.ToBytes(this);
}
