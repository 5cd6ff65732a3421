using System.Runtime.CompilerServices;
using System.Diagnostics;
using System.Text;
using Pruning.Sparse.Kernels;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Serialization;

namespace Pruning.Sparse;

/// <summary>
/// A chain of inference layers with a fixed per-sample input shape: what an exported pruned model runs on, with no
/// TorchSharp or native library. Inputs and outputs use PyTorch's layout ([N, C, H, W], or [N, features]).
/// Running is safe from several threads; calls on one model run one at a time. The working buffers are allocated on
/// the first run and reused; their size is bounded by <see cref="SparseModelOptions.MaxBufferBytes"/>.
/// </summary>
public sealed class SparseModel
{
    private readonly FeatureShape[] _shapes;
    private readonly object _gate = new();
    private Buffers? _buffers;

    /// <summary>Creates the model and checks that every layer accepts the previous layer's output and that a run at batch 1 fits the memory budget.</summary>
    /// <exception cref="ArgumentException">A layer does not accept its input (<paramref name="layers"/>), or a run at batch 1
    /// needs more working memory than <paramref name="options"/> allow (<paramref name="options"/>).</exception>
    public SparseModel(FeatureShape input, IEnumerable<SparseLayer> layers, SparseModelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(layers);
        Options = options ?? SparseModelOptions.Default;
        Options.Validate();
        Layers = layers.ToArray();
        if (Layers.Count == 0) throw new ArgumentException("A model needs at least one layer.", nameof(layers));
        _shapes = new FeatureShape[Layers.Count + 1];
        _shapes[0] = input;
        for (int i = 0; i < Layers.Count; i++)
        {
            if (Layers[i] is null) throw new ArgumentException($"Layer {i} is null.", nameof(layers));
            try
            {
                _shapes[i + 1] = Layers[i].OutputShape(_shapes[i]);
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"Layer {i} ({Layers[i].Describe()}): {e.Message}", nameof(layers), e);
            }
        }
        long needed = BufferBytes(1);
        if (needed > Options.MaxBufferBytes)
            throw new ArgumentException(
                $"A run at batch 1 needs {needed:N0} bytes of working memory (activations {_shapes.Max(s => s.Size):N0} values wide), more than the budget of {Options.MaxBufferBytes:N0} (SparseModelOptions.MaxBufferBytes).", nameof(options));
    }

    /// <summary>The limits this model keeps to.</summary>
    public SparseModelOptions Options { get; }

    /// <summary>
    /// The working memory a run of <paramref name="batch"/> samples allocates, in bytes: two buffers as wide as the
    /// widest activation, and the largest scratch any layer needs. <see cref="long.MaxValue"/> when it overflows.
    /// </summary>
    public long BufferBytes(int batch)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        try
        {
            long activations = checked(_shapes.Max(s => (long)s.Size) * batch);
            long scratch = 0;
            for (int i = 0; i < Layers.Count; i++) scratch = Math.Max(scratch, Layers[i].ScratchSize(_shapes[i], batch));
            return checked((2 * activations + scratch) * sizeof(float));
        }
        catch (OverflowException)
        {
            return long.MaxValue;
        }
    }

    /// <summary>The layers, in order.</summary>
    public IReadOnlyList<SparseLayer> Layers { get; }

    /// <summary>One sample's input shape.</summary>
    public FeatureShape InputShape => _shapes[0];

    /// <summary>One sample's output shape.</summary>
    public FeatureShape OutputShape => _shapes[^1];

    /// <summary>Weights and biases stored (non-zeros for CSR layers, every entry for dense ones).</summary>
    public long StoredParameters => Layers.Sum(l => l.StoredParameters);

    /// <summary>Bytes of weights and biases as the kernels read them.</summary>
    public long StoredBytes => Layers.Sum(l => l.StoredBytes);

    /// <summary>
    /// Runs <paramref name="batch"/> samples: <paramref name="input"/> holds batch × <see cref="InputShape"/> values
    /// ([N, C, H, W]) and <paramref name="output"/> receives batch × <see cref="OutputShape"/> values.
    /// <paramref name="threads"/> 0 uses every core.
    /// </summary>
    public void Run(ReadOnlySpan<float> input, Span<float> output, int batch = 1, int threads = 0) => Run(input, output, batch, threads, null);

    /// <summary>
    /// <see cref="Run(ReadOnlySpan{float}, Span{float}, int, int)"/>, adding each top-level layer's time inside the
    /// model (Stopwatch ticks) to <paramref name="layerTicks"/>[i], and the layout conversions at the input and the
    /// output to its last entry (one more than the layers): the per-layer profile of the benchmarks' <c>--layers</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void Run(ReadOnlySpan<float> input, Span<float> output, int batch, int threads, long[]? layerTicks)
    {
        if (layerTicks is not null && layerTicks.Length != Layers.Count + 1)
            throw new ArgumentException($"The profile needs {Layers.Count + 1} entries, one per layer and one for the conversions.", nameof(layerTicks));
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "Batch must be positive.");
        if (threads < 0) throw new ArgumentOutOfRangeException(nameof(threads), threads, "Thread count must be 0 (all cores) or positive.");
        if (input.Length != (long)InputShape.Size * batch)
            throw new ArgumentException($"Input must hold {batch} × {InputShape} = {(long)InputShape.Size * batch} values, got {input.Length}.", nameof(input));
        if (output.Length != (long)OutputShape.Size * batch)
            throw new ArgumentException($"Output must hold {batch} × {OutputShape} = {(long)OutputShape.Size * batch} values, got {output.Length}.", nameof(output));
        lock (_gate)
        {
            Buffers buffers = BuffersFor(batch);
            Span<float> current = buffers.A, next = buffers.B;
            long start = layerTicks is null ? 0 : Stopwatch.GetTimestamp();
            ToChannelMajor(input, InputShape, batch, current);
            if (layerTicks is not null) layerTicks[Layers.Count] += Stopwatch.GetTimestamp() - start;
            for (int i = 0; i < Layers.Count;)
            {
                if (layerTicks is not null) start = Stopwatch.GetTimestamp();
                // An in-place layer writes over its input; a fused activation's time counts to the layer before it.
                bool inPlace = Layers[i].InPlace;
                Epilogue? fused = LayerChains.FusedAfter(Layers, _shapes, i, batch);
                LayerChains.Step(Layers, _shapes, i, fused, current, inPlace ? current : next, buffers.Scratch, batch, threads);
                if (!inPlace)
                {
                    Span<float> swap = current;
                    current = next;
                    next = swap;
                }
                if (layerTicks is not null) layerTicks[i] += Stopwatch.GetTimestamp() - start;
                i += 1 + (fused?.Layers ?? 0);
            }
            if (layerTicks is not null) start = Stopwatch.GetTimestamp();
            FromChannelMajor(current, OutputShape, batch, output);
            if (layerTicks is not null) layerTicks[Layers.Count] += Stopwatch.GetTimestamp() - start;
        }
    }

    /// <summary>Convenience: runs <paramref name="batch"/> samples and returns a new output array.</summary>
    public float[] Run(float[] input, int batch = 1, int threads = 0)
    {
        ArgumentNullException.ThrowIfNull(input);
        var output = new float[(long)OutputShape.Size * batch];
        Run(input, output, batch, threads);
        return output;
    }

    /// <summary>A table of the layers: shapes, format, stored parameters and bytes.</summary>
    public string Describe()
    {
        var text = new StringBuilder();
        text.AppendLine($"input {InputShape}");
        for (int i = 0; i < Layers.Count; i++)
            text.AppendLine($"{i,3}  {Layers[i].Describe(),-48} → {_shapes[i + 1],-16} {Layers[i].StoredParameters,12:N0} params {Layers[i].StoredBytes,12:N0} B");
        text.Append($"total {StoredParameters:N0} stored parameters, {StoredBytes:N0} bytes");
        return text.ToString();
    }

    private Buffers BuffersFor(int batch)
    {
        // Every buffer scales with the batch, so the largest batch seen serves all smaller ones without reallocating.
        if (_buffers is { } cached && cached.Batch >= batch) return cached;
        long needed = BufferBytes(batch);
        if (needed > Options.MaxBufferBytes)
            throw new ArgumentOutOfRangeException(nameof(batch), batch,
                $"A batch of {batch} needs {needed:N0} bytes of working memory, more than the budget of {Options.MaxBufferBytes:N0} (SparseModelOptions.MaxBufferBytes); run smaller batches or raise the budget.");
        long activations = _shapes.Max(s => (long)s.Size) * batch;
        long scratch = 0;
        for (int i = 0; i < Layers.Count; i++) scratch = Math.Max(scratch, Layers[i].ScratchSize(_shapes[i], batch));
        if (activations > Array.MaxLength || scratch > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, $"A batch of {batch} needs more than {Array.MaxLength} values in one buffer; run smaller batches.");
        _buffers = null; // let the smaller buffers go before the larger ones are allocated
        _buffers = new Buffers(batch, new float[activations], new float[activations], new float[scratch]);
        return _buffers;
    }

    /// <summary>[N, C, HW] → [C, N, HW].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ToChannelMajor(ReadOnlySpan<float> x, FeatureShape shape, int batch, Span<float> destination)
    {
        int c = shape.Channels, plane = shape.Plane;
        if (batch == 1) { x.CopyTo(destination); return; }
        if (plane == 1) { Transposition.Transpose(x, batch, c, c, destination, batch); return; }
        for (int n = 0; n < batch; n++)
            for (int ch = 0; ch < c; ch++)
                x.Slice((n * c + ch) * plane, plane).CopyTo(destination.Slice((ch * batch + n) * plane, plane));
    }

    /// <summary>[C, N, HW] → [N, C, HW].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FromChannelMajor(ReadOnlySpan<float> x, FeatureShape shape, int batch, Span<float> destination)
    {
        int c = shape.Channels, plane = shape.Plane;
        if (batch == 1) { x[..shape.Size].CopyTo(destination); return; }
        if (plane == 1) { Transposition.Transpose(x, c, batch, batch, destination, c); return; }
        for (int ch = 0; ch < c; ch++)
            for (int n = 0; n < batch; n++)
                x.Slice((ch * batch + n) * plane, plane).CopyTo(destination.Slice((n * c + ch) * plane, plane));
    }

    private sealed record Buffers(int Batch, float[] A, float[] B, float[] Scratch);

    /// <summary>
    /// Loads the model in <paramref name="path"/> (.psm, magic <c>PRNSPMDL</c>). The file is untrusted: its checksum is
    /// verified before parsing, every count is checked against the bytes left before anything is allocated, and the
    /// model's working memory must fit <see cref="SparseModelOptions.MaxBufferBytes"/>; any problem is a
    /// <see cref="SparseModelFormatException"/> naming the file.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="options">Limits for the loaded model (the default budget when null).</param>
    /// <exception cref="FileNotFoundException">There is no such file.</exception>
    /// <exception cref="SparseModelFormatException">The file is not a valid model, or the model needs more working memory than allowed.</exception>
    public static SparseModel Load(string path, SparseModelOptions? options = null) => SparseModelFile.Load(path, options);

    /// <summary>Reads a model from its file bytes (as <see cref="Load"/> checks them); <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="SparseModelFormatException">The bytes are not a valid model, or the model needs more working memory than allowed.</exception>
    public static SparseModel Read(ReadOnlySpan<byte> bytes, string source = "bytes", SparseModelOptions? options = null) => SparseModelFile.Read(bytes, source, options);

    /// <summary>Reads a model from <paramref name="stream"/> (at most 2 GiB − 1 bytes); <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="SparseModelFormatException">The bytes are not a valid model, or the model needs more working memory than allowed.</exception>
    public static SparseModel Read(Stream stream, string source = "stream", SparseModelOptions? options = null) => SparseModelFile.Read(stream, source, options);

    /// <summary>Writes the model to <paramref name="path"/> (.psm) atomically: a temporary file, then a rename, so a crash never leaves half a file.</summary>
    public void Save(string path) => SparseModelFile.Save(this, path);

    /// <summary>The model's file bytes, as <see cref="Save"/> writes them.</summary>
    public byte[] ToBytes() => SparseModelFile.ToBytes(this);

    /// <summary>Writes the model's file bytes to <paramref name="stream"/>.</summary>
    public void Write(Stream stream) => SparseModelFile.Write(this, stream);
}
