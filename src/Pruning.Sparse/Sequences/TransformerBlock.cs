using System.Runtime.CompilerServices;
using System.Numerics;
using Pruning.Sparse.Kernels;
using Pruning.Sparse.Layers;

namespace Pruning.Sparse.Sequences;

/// <summary>
/// One transformer layer: multi-head causal self-attention and a GELU MLP, each with a residual connection and a
/// LayerNorm, before its sublayer (<see cref="NormFirst"/>, GPT-2's pre-LN) or after the residual add (the original
/// post-LN, PyTorch's <c>TransformerEncoderLayer</c> default). The query, key and value projections are one matrix
/// [3·d, d] (their rows stacked, so one product computes all three; each keeps its own sparsity); every projection may
/// be stored in any <see cref="Matrices.WeightMatrix"/> format.
/// </summary>
public sealed class TransformerBlock
{
    /// <summary>Creates the block and checks that the sizes fit together.</summary>
    /// <exception cref="ArgumentException">A size does not fit (the argument is named), or <paramref name="heads"/> does not divide the model dimension.</exception>
    public TransformerBlock(LayerNorm attentionNorm, LinearLayer queryKeyValue, LinearLayer attentionOutput, int heads,
        LayerNorm mlpNorm, LinearLayer mlpUp, LinearLayer mlpDown, GeluApproximation gelu = GeluApproximation.None, bool normFirst = true)
    {
        AttentionNorm = attentionNorm ?? throw new ArgumentNullException(nameof(attentionNorm));
        QueryKeyValue = queryKeyValue ?? throw new ArgumentNullException(nameof(queryKeyValue));
        AttentionOutput = attentionOutput ?? throw new ArgumentNullException(nameof(attentionOutput));
        MlpNorm = mlpNorm ?? throw new ArgumentNullException(nameof(mlpNorm));
        MlpUp = mlpUp ?? throw new ArgumentNullException(nameof(mlpUp));
        MlpDown = mlpDown ?? throw new ArgumentNullException(nameof(mlpDown));
        int d = attentionNorm.Dimension;
        if (heads < 1 || d % heads != 0)
            throw new ArgumentException($"{heads} heads do not divide the model dimension {d}.", nameof(heads));
        if (!Enum.IsDefined(gelu)) throw new ArgumentException($"Unknown GELU approximation {gelu}.", nameof(gelu));
        Check(queryKeyValue, 3 * d, d, nameof(queryKeyValue));
        Check(attentionOutput, d, d, nameof(attentionOutput));
        if (mlpNorm.Dimension != d) throw new ArgumentException($"The MLP's LayerNorm has {mlpNorm.Dimension} features, the model {d}.", nameof(mlpNorm));
        Check(mlpUp, mlpUp.Weight.Rows, d, nameof(mlpUp));
        Check(mlpDown, d, mlpUp.Weight.Rows, nameof(mlpDown));
        Heads = heads;
        Gelu = gelu;
        NormFirst = normFirst;
    }

    /// <summary>The LayerNorm of the attention sublayer.</summary>
    public LayerNorm AttentionNorm { get; }

    /// <summary>Queries, keys and values: [3·d, d], in that order.</summary>
    public LinearLayer QueryKeyValue { get; }

    /// <summary>The attention's output projection [d, d].</summary>
    public LinearLayer AttentionOutput { get; }

    /// <summary>Attention heads; each sees d / heads features.</summary>
    public int Heads { get; }

    /// <summary>The LayerNorm of the MLP sublayer.</summary>
    public LayerNorm MlpNorm { get; }

    /// <summary>The MLP's first projection [hidden, d].</summary>
    public LinearLayer MlpUp { get; }

    /// <summary>The MLP's second projection [d, hidden].</summary>
    public LinearLayer MlpDown { get; }

    /// <summary>The MLP's activation.</summary>
    public GeluApproximation Gelu { get; }

    /// <summary>True: x + f(LN(x)) (pre-LN). False: LN(x + f(x)) (post-LN).</summary>
    public bool NormFirst { get; }

    /// <summary>Model features.</summary>
    public int Dimension => AttentionNorm.Dimension;

    /// <summary>The MLP's hidden features.</summary>
    public int Hidden => MlpUp.Weight.Rows;

    /// <summary>Weights and biases stored.</summary>
    public long StoredParameters => AttentionNorm.StoredParameters + QueryKeyValue.StoredParameters + AttentionOutput.StoredParameters
        + MlpNorm.StoredParameters + MlpUp.StoredParameters + MlpDown.StoredParameters;

    /// <summary>"Block d=128, 4 heads, MLP 512, pre-LN, GELU (qkv CSR, 90.0 % sparse; …)".</summary>
    public string Describe() =>
        $"Block d={Dimension}, {Heads} heads, MLP {Hidden}, {(NormFirst ? "pre-LN" : "post-LN")}, GELU{(Gelu == GeluApproximation.Tanh ? " (tanh)" : "")} " +
        $"(qkv {SparseLayer.Format(QueryKeyValue.Weight)}; out {SparseLayer.Format(AttentionOutput.Weight)}; up {SparseLayer.Format(MlpUp.Weight)}; down {SparseLayer.Format(MlpDown.Weight)})";

    private static void Check(LinearLayer layer, int rows, int cols, string name)
    {
        if (layer.Weight.Rows != rows || layer.Weight.Cols != cols)
            throw new ArgumentException($"{name} must be [{rows}, {cols}]; got {layer.Weight.Rows}×{layer.Weight.Cols}.", name);
    }

    /// <summary>
    /// Runs the block over x [d, steps·batch] in place (column t·batch + n). The new tokens sit at positions
    /// cache.Length + t; their keys and values are written into the cache's layer <paramref name="layer"/> (the caller
    /// advances its length after the last block).
    /// </summary>
    internal void Forward(float[] x, TransformerModel.Buffers b, int batch, int steps, AttentionCache cache, int layer, int threads)
    {
        int d = Dimension, columns = batch * steps;
        Span<float> xs = x.AsSpan(0, d * columns), h = b.Normed.AsSpan(0, d * columns), o = b.Output.AsSpan(0, d * columns);
        Span<float> qkv = b.QueryKeyValue.AsSpan(0, 3 * d * columns), u = b.Hidden.AsSpan(0, Hidden * columns);
        Span<float> statistics = b.Statistics.AsSpan(0, 2 * columns);
        if (NormFirst) AttentionNorm.Forward(xs, h, columns, statistics);
        QueryKeyValue.Weight.Multiply(NormFirst ? h : xs, qkv, columns, QueryKeyValue.Bias, threads);
        Attend(b, batch, steps, cache, layer, threads);   // → h
        AttentionOutput.Weight.Multiply(h, o, columns, AttentionOutput.Bias, threads);
        LayerNorm.Add(o, xs);
        if (!NormFirst) AttentionNorm.Forward(xs, xs, columns, statistics);
        if (NormFirst) MlpNorm.Forward(xs, h, columns, statistics);
        MlpUp.Weight.Multiply(NormFirst ? h : xs, u, columns, MlpUp.Bias, threads);
        Sequences.Gelu.Apply(u, Gelu);
        MlpDown.Weight.Multiply(u, o, columns, MlpDown.Bias, threads);
        LayerNorm.Add(o, xs);
        if (!NormFirst) MlpNorm.Forward(xs, xs, columns, statistics);
    }

    /// <summary>
    /// Causal multi-head attention from b.QueryKeyValue into b.Normed: each (sequence, head) pair stores its new keys
    /// and values in the cache, then every new position attends to the cached positions up to and including itself.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Attend(TransformerModel.Buffers b, int batch, int steps, AttentionCache cache, int layer, int threads)
    {
        int d = Dimension, size = d / Heads, columns = batch * steps, past = cache.Length, capacity = cache.Capacity, heads = Heads;
        float[] qkv = b.QueryKeyValue, output = b.Normed, keys = cache.Keys(layer), values = cache.Values(layer), scratch = b.Attention;
        int slotFloats = b.AttentionSlotFloats;
        float scale = 1f / MathF.Sqrt(size);
        long work = (long)batch * heads * steps * (past + steps) * size * 2;
        int[] bounds = Parallelism.Even(batch * heads, threads, work);
        Parallelism.Run(bounds, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (first, end) =>
        {
            Span<float> slot = scratch.AsSpan(WorkerPool.Slot * slotFloats, slotFloats);
            Span<float> query = slot[..size], sum = slot.Slice(size, size), scores = slot.Slice(2 * size, past + steps);
            for (int pair = first; pair < end; pair++)
            {
                int n = pair / heads, head = pair % heads;
                long start = ((long)n * heads + head) * capacity * size;
                Span<float> k = keys.AsSpan((int)start, capacity * size), v = values.AsSpan((int)start, capacity * size);
                for (int t = 0; t < steps; t++)
                {
                    int column = t * batch + n, at = (past + t) * size;
                    for (int i = 0; i < size; i++)
                    {
                        int row = head * size + i;
                        k[at + i] = qkv[(d + row) * columns + column];
                        v[at + i] = qkv[(2 * d + row) * columns + column];
                    }
                }
                for (int t = 0; t < steps; t++)
                {
                    int column = t * batch + n, visible = past + t + 1;
                    for (int i = 0; i < size; i++) query[i] = qkv[(head * size + i) * columns + column];
                    float max = float.NegativeInfinity;
                    for (int j = 0; j < visible; j++)
                    {
                        float s = Dot(query, k.Slice(j * size, size)) * scale;
                        scores[j] = s;
                        max = MathF.Max(max, s);
                    }
                    float total = 0;
                    for (int j = 0; j < visible; j++)
                    {
                        float e = MathF.Exp(scores[j] - max);
                        scores[j] = e;
                        total += e;
                    }
                    sum.Clear();
                    for (int j = 0; j < visible; j++) AddScaled(v.Slice(j * size, size), scores[j], sum);
                    float inverse = 1f / total;
                    for (int i = 0; i < size; i++) output[(head * size + i) * columns + column] = sum[i] * inverse;
                }
            }
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        var acc = Vector<float>.Zero;
        int i = 0;
        for (; i <= a.Length - Vector<float>.Count; i += Vector<float>.Count) acc += new Vector<float>(a[i..]) * new Vector<float>(b[i..]);
        float s = Vector.Sum(acc);
        for (; i < a.Length; i++) s += a[i] * b[i];
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AddScaled(ReadOnlySpan<float> x, float a, Span<float> y)
    {
        int i = 0;
        var scale = new Vector<float>(a);
        for (; i <= x.Length - Vector<float>.Count; i += Vector<float>.Count) (new Vector<float>(y[i..]) + scale * new Vector<float>(x[i..])).CopyTo(y[i..]);
        for (; i < x.Length; i++) y[i] += a * x[i];
    }
}
