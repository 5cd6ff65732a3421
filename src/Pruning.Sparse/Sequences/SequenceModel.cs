using System.Runtime.CompilerServices;
using System.Text;
using Pruning.Sparse.Kernels;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Serialization;

namespace Pruning.Sparse.Sequences;

/// <summary>
/// A recurrent language model for standalone inference: token embedding → stacked LSTM or GRU layers → a Linear decoder
/// per step, with no TorchSharp or native library. <see cref="Run(ReadOnlySpan{int}, Span{float}, int, int, RecurrentState?, int)"/>
/// reads sequences (and a state to continue from); <see cref="Step"/> feeds one token per sequence, what generation
/// needs. Inputs are batch-first [batch, steps] token ids; outputs [batch, steps, outputs] logits. Runs of one model
/// take turns; its working buffers are bounded by <see cref="SparseModelOptions.MaxBufferBytes"/>.
/// </summary>
public sealed class SequenceModel
{
    private readonly object _gate = new();
    private Buffers? _buffers;

    /// <summary>Creates the model and checks that the pieces fit together and that one step of one sequence fits the memory budget.</summary>
    /// <exception cref="ArgumentException">Sizes do not chain (<paramref name="layers"/>, <paramref name="decoder"/>), or one step needs
    /// more working memory than <paramref name="options"/> allow (<paramref name="options"/>).</exception>
    public SequenceModel(EmbeddingLayer embedding, IEnumerable<RecurrentLayer> layers, LinearLayer decoder, SparseModelOptions? options = null)
    {
        Embedding = embedding ?? throw new ArgumentNullException(nameof(embedding));
        ArgumentNullException.ThrowIfNull(layers);
        Decoder = decoder ?? throw new ArgumentNullException(nameof(decoder));
        Layers = layers.ToArray();
        Options = options ?? SparseModelOptions.Default;
        Options.Validate();
        if (Layers.Count == 0) throw new ArgumentException("A sequence model needs at least one recurrent layer.", nameof(layers));
        int features = embedding.Dimension;
        for (int l = 0; l < Layers.Count; l++)
        {
            if (Layers[l] is null) throw new ArgumentException($"Layer {l} is null.", nameof(layers));
            if (Layers[l].InputSize != features)
                throw new ArgumentException($"Layer {l} ({Layers[l].Describe()}) takes {Layers[l].InputSize} features but gets {features}.", nameof(layers));
            features = Layers[l].HiddenSize;
        }
        if (decoder.Weight.Cols != features)
            throw new ArgumentException($"The decoder ({decoder.Describe()}) takes {decoder.Weight.Cols} features but the last layer gives {features}.", nameof(decoder));
        long needed = BufferBytes(1, 1);
        if (needed > Options.MaxBufferBytes)
            throw new ArgumentException($"One step of one sequence needs {needed:N0} bytes of working memory, more than the budget of {Options.MaxBufferBytes:N0} (SparseModelOptions.MaxBufferBytes).", nameof(options));
    }

    /// <summary>The token embedding.</summary>
    public EmbeddingLayer Embedding { get; }

    /// <summary>The recurrent layers, bottom first.</summary>
    public IReadOnlyList<RecurrentLayer> Layers { get; }

    /// <summary>The decoder applied to the last layer's output at every step.</summary>
    public LinearLayer Decoder { get; }

    /// <summary>The limits this model keeps to.</summary>
    public SparseModelOptions Options { get; }

    /// <summary>Logits per step.</summary>
    public int Outputs => Decoder.Weight.Rows;

    /// <summary>Weights and biases stored.</summary>
    public long StoredParameters => Embedding.Table.StoredEntries + Layers.Sum(l => l.StoredParameters) + Decoder.StoredParameters;

    /// <summary>A zero state for <paramref name="batch"/> sequences.</summary>
    public RecurrentState NewState(int batch)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        return new RecurrentState(Layers, batch);
    }

    /// <summary>The working memory a run of <paramref name="batch"/> sequences of <paramref name="steps"/> tokens allocates, in bytes (<see cref="long.MaxValue"/> when it overflows).</summary>
    public long BufferBytes(int batch, int steps)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(steps, 1);
        try
        {
            long columns = checked((long)batch * steps);
            long widest = Math.Max(Embedding.Dimension, Layers.Max(l => l.HiddenSize));
            long gates = Layers.Max(l => (long)l.Gates * l.HiddenSize);
            long values = checked(2 * widest * columns + gates * columns + gates * batch + (long)Outputs * columns + Embedding.Dimension);
            return checked(values * sizeof(float));
        }
        catch (OverflowException)
        {
            return long.MaxValue;
        }
    }

    /// <summary>
    /// Runs <paramref name="batch"/> sequences of <paramref name="steps"/> tokens: <paramref name="tokens"/> is [batch, steps]
    /// (batch-first), <paramref name="logits"/> receives [batch, steps, <see cref="Outputs"/>]. With a
    /// <paramref name="state"/> the sequences continue from it and it is left holding the state after the last step;
    /// without one they start from zeros.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A token id is outside the vocabulary (names its sequence and step), or the run needs more memory than the budget.</exception>
    /// <exception cref="ArgumentException">A span has the wrong length, or the state is for another batch size or model.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Run(ReadOnlySpan<int> tokens, Span<float> logits, int batch, int steps, RecurrentState? state = null, int threads = 0)
    {
        TokenRuns.Check(tokens, logits, batch, steps, Outputs, threads);
        if (state is not null && (state.Batch != batch || state.Layers != Layers.Count))
            throw new ArgumentException($"The state is for {state.Batch} sequences and {state.Layers} layers; this run has {batch} and the model {Layers.Count}.", nameof(state));
        lock (_gate)
        {
            Buffers b = BuffersFor(batch, steps);
            state ??= b.ScratchState(this, batch);
            int columns = batch * steps;
            Embedding.Lookup(tokens, batch, steps, b.A, b.Row);
            Span<float> current = b.A, next = b.B;
            for (int l = 0; l < Layers.Count; l++)
            {
                Layers[l].Forward(current, next, batch, steps, state.Hidden(l), state.Cell(l), b.Projection, b.Gates, threads);
                Span<float> swap = current;
                current = next;
                next = swap;
            }
            Span<float> y = b.Logits.AsSpan(0, Outputs * columns);
            Decoder.Weight.Multiply(current[..(Decoder.Weight.Cols * columns)], y, columns, Decoder.Bias, threads);
            TokenRuns.WriteBatchFirst(y, logits, batch, steps, Outputs);
        }
    }

    /// <summary>Convenience: runs the sequences and returns new logits.</summary>
    public float[] Run(int[] tokens, int batch, int steps, RecurrentState? state = null, int threads = 0)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        var logits = new float[(long)batch * steps * Outputs];
        Run(tokens, logits, batch, steps, state, threads);
        return logits;
    }

    /// <summary>One token per sequence: <paramref name="tokens"/> [batch] in, <paramref name="logits"/> [batch, outputs] out, <paramref name="state"/> advanced.</summary>
    public void Step(ReadOnlySpan<int> tokens, Span<float> logits, RecurrentState state, int threads = 0)
    {
        ArgumentNullException.ThrowIfNull(state);
        Run(tokens, logits, state.Batch, 1, state, threads);
    }

    /// <summary>A table of the pieces and their storage.</summary>
    public string Describe()
    {
        var text = new StringBuilder();
        text.AppendLine(Embedding.Describe());
        foreach (RecurrentLayer layer in Layers) text.AppendLine(layer.Describe());
        text.AppendLine(Decoder.Describe());
        text.Append($"total {StoredParameters:N0} stored parameters");
        return text.ToString();
    }

    private Buffers BuffersFor(int batch, int steps)
    {
        if (_buffers is { } cached && cached.Batch >= batch && cached.Steps >= steps && (long)cached.Batch * cached.Steps >= (long)batch * steps) return cached;
        int b = Math.Max(batch, _buffers?.Batch ?? 0), s = Math.Max(steps, _buffers?.Steps ?? 0);
        long needed = BufferBytes(b, s);
        if (needed > Options.MaxBufferBytes)
        {
            (b, s, needed) = (batch, steps, BufferBytes(batch, steps));
            if (needed > Options.MaxBufferBytes)
                throw new ArgumentOutOfRangeException(nameof(batch), batch,
                    $"{batch} sequences of {steps} steps need {needed:N0} bytes of working memory, more than the budget of {Options.MaxBufferBytes:N0} (SparseModelOptions.MaxBufferBytes); run fewer or shorter sequences, or raise the budget.");
        }
        long columns = (long)b * s;
        long widest = Math.Max(Embedding.Dimension, Layers.Max(l => l.HiddenSize));
        long gates = Layers.Max(l => (long)l.Gates * l.HiddenSize);
        if (widest * columns > Array.MaxLength || gates * columns > Array.MaxLength || (long)Outputs * columns > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, $"{batch} sequences of {steps} steps need more than {Array.MaxLength} values in one buffer; run fewer or shorter sequences.");
        _buffers = null;
        _buffers = new Buffers(b, s, new float[widest * columns], new float[widest * columns], new float[gates * columns], new float[gates * b],
            new float[Outputs * columns], new float[Embedding.Dimension]);
        return _buffers;
    }

    private sealed record Buffers(int Batch, int Steps, float[] A, float[] B, float[] Projection, float[] Gates, float[] Logits, float[] Row)
    {
        private RecurrentState? _scratch;

        /// <summary>A zeroed state for runs without one (reused: the caller does not see it).</summary>
        public RecurrentState ScratchState(SequenceModel model, int batch)
        {
            if (_scratch is null || _scratch.Batch != batch) _scratch = model.NewState(batch);
            else _scratch.Reset();
            return _scratch;
        }
    }

    /// <summary>
    /// Loads the model in <paramref name="path"/> (.psq, magic <c>PRNSPSEQ</c>). The file is untrusted: its checksum is
    /// verified before parsing, every count is checked against the bytes left before anything is allocated, and the
    /// model's working memory must fit <see cref="SparseModelOptions.MaxBufferBytes"/>; any problem is a
    /// <see cref="SparseModelFormatException"/> naming the file.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="options">Limits for the loaded model (the default budget when null).</param>
    /// <exception cref="FileNotFoundException">There is no such file.</exception>
    /// <exception cref="SparseModelFormatException">The file is not a valid sequence model, or the model needs more working memory than allowed.</exception>
    public static SequenceModel Load(string path, SparseModelOptions? options = null) => SequenceModelFile.Load(path, options);

    /// <summary>Reads a model from its file bytes (as <see cref="Load"/> checks them); <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="SparseModelFormatException">The bytes are not a valid sequence model, or the model needs more working memory than allowed.</exception>
    public static SequenceModel Read(ReadOnlySpan<byte> bytes, string source = "bytes", SparseModelOptions? options = null) => SequenceModelFile.Read(bytes, source, options);

    /// <summary>Writes the model to <paramref name="path"/> (.psq) atomically: a temporary file, then a rename, so a crash never leaves half a file.</summary>
    public void Save(string path) => SequenceModelFile.Save(this, path);

    /// <summary>The model's file bytes, as <see cref="Save"/> writes them.</summary>
    public byte[] ToBytes() => SequenceModelFile.ToBytes(this);
}
