using System.Text.RegularExpressions;
using Pruning.Interop;
using Pruning.Sparse;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Sequences;
using TorchSharp;
using TorchSharp.Modules;
using LayerNorm = TorchSharp.Modules.LayerNorm;
using static TorchSharp.torch;

namespace Pruning.Export;

// Language models: LSTM/GRU sequence models, then decoder-only transformers.

static partial class SparseExport
{
    private static readonly Regex LayerParameter = new(@"^(weight|bias)_(ih|hh)_l(\d+)(_reverse)?$", RegexOptions.CultureInvariant);

    /// <summary>Builds the inference model from <paramref name="model"/>'s children (see the remarks).</summary>
    /// <remarks>
    /// <para>
    /// Turns a pruned recurrent language model (token embedding → stacked LSTM or GRU → Linear decoder) into a
    /// <see cref="SequenceModel"/> for standalone inference, and writes its file (<see cref="SequenceModel.Save"/>). Pruned
    /// <c>weight_ih_l*</c>/<c>weight_hh_l*</c>, the embedding and the decoder are stored sparse where
    /// <see cref="MatrixFormat.Auto"/> says so. Export after <see cref="GradualPruner.Strip"/> (or with the masks applied).
    /// </para>
    /// <para>
    /// The model's forward is not traced: the pieces are found among its direct children in registration order — one
    /// <c>Embedding</c>, then one or more <c>LSTM</c> or <c>GRU</c> modules (stacked in that order, all of one kind), then
    /// one <c>Linear</c>; <c>Dropout</c> anywhere is skipped (inference). Any other child, a bidirectional or projected
    /// recurrent module, or a different order is refused with the module's name. Embedding options that act at lookup
    /// time (<c>max_norm</c>) are not seen and not reproduced.
    /// </para>
    /// </remarks>
    /// <exception cref="NotSupportedException">A child is not part of the supported structure; the message names it.</exception>
    public static SequenceModel ToSequenceModel(nn.Module model, MatrixFormat format = MatrixFormat.Auto, SparseModelOptions? options = null)
    {
        TorchHealth.EnsureOnFirstUse();
        ArgumentNullException.ThrowIfNull(model);
        var children = model.named_children().Where(c => c.module is not (Dropout or Identity)).ToList();
        if (children.Count < 3 || children[0].module is not Embedding || children[^1].module is not Linear)
            throw new NotSupportedException($"A sequence model is Embedding → LSTM/GRU (one or more) → Linear among its children; '{Describe(model)}' has {string.Join(", ", children.Select(c => $"'{c.name}' ({c.module.GetType().Name})"))}.");
        var recurrent = children.Skip(1).Take(children.Count - 2).ToList();
        foreach (var (name, module) in recurrent)
            if (module is not (LSTM or GRU))
                throw new NotSupportedException($"Module '{name}' ({module.GetType().Name}) sits between the embedding and the decoder; only LSTM and GRU modules can.");
        if (recurrent.Select(c => c.module.GetType()).Distinct().Count() > 1)
            throw new NotSupportedException($"The recurrent modules mix LSTM and GRU ({string.Join(", ", recurrent.Select(c => c.name))}); export them as separate models.");
        return ToSequenceModel((Embedding)children[0].module, recurrent.Select(c => (c.name, c.module)).ToList(), (Linear)children[^1].module, format, options);
    }

    /// <summary>Builds the inference model from its pieces: the embedding, the recurrent modules in order, the decoder.</summary>
    /// <exception cref="NotSupportedException">A recurrent module is bidirectional or has parameters this runtime does not know.</exception>
    public static SequenceModel ToSequenceModel(Embedding embedding, IReadOnlyList<(string Name, nn.Module Module)> recurrent, Linear decoder,
        MatrixFormat format = MatrixFormat.Auto, SparseModelOptions? options = null)
    {
        TorchHealth.EnsureOnFirstUse();
        ArgumentNullException.ThrowIfNull(embedding);
        ArgumentNullException.ThrowIfNull(recurrent);
        ArgumentNullException.ThrowIfNull(decoder);
        using var _ = torch.no_grad();
        var table = embedding.weight ?? throw new NotSupportedException("The embedding has no weight.");
        var embeddingLayer = new EmbeddingLayer(Matrix(table, format));
        var layers = new List<RecurrentLayer>();
        foreach (var (name, module) in recurrent)
            layers.AddRange(Layers(name, module, format));
        var decoderLayer = new LinearLayer(Matrix(decoder.weight!, format), decoder.bias is null ? default : Floats(decoder.bias));
        return new SequenceModel(embeddingLayer, layers, decoderLayer, options);
    }

    /// <summary>Builds the inference model and saves it to <paramref name="path"/> (see <see cref="SequenceModel.Save"/>).</summary>
    public static SequenceModel SaveSequenceModel(nn.Module model, string path, MatrixFormat format = MatrixFormat.Auto)
    {
        SequenceModel sequence = ToSequenceModel(model, format);
        sequence.Save(path);
        return sequence;
    }

    /// <summary>The stacked layers of one LSTM or GRU module, from its <c>weight_ih_lK</c>, <c>weight_hh_lK</c>, <c>bias_ih_lK</c>, <c>bias_hh_lK</c>.</summary>
    private static IEnumerable<RecurrentLayer> Layers(string name, nn.Module module, MatrixFormat format)
    {
        var parameters = module.named_parameters(recurse: false).ToDictionary(p => p.name, p => p.parameter);
        foreach (string parameter in parameters.Keys)
        {
            Match match = LayerParameter.Match(parameter);
            if (!match.Success)
                throw new NotSupportedException($"Module '{name}' has parameter '{parameter}', which this runtime does not know (projections are not supported).");
            if (match.Groups[4].Success)
                throw new NotSupportedException($"Module '{name}' is bidirectional ('{parameter}'); only unidirectional recurrent layers can be exported.");
        }
        int count = parameters.Keys.Count(p => p.StartsWith("weight_ih_l", StringComparison.Ordinal));
        var layers = new List<RecurrentLayer>(count);
        for (int l = 0; l < count; l++)
        {
            Tensor ih = parameters.GetValueOrDefault($"weight_ih_l{l}") ?? throw new NotSupportedException($"Module '{name}' has no weight_ih_l{l}.");
            Tensor hh = parameters.GetValueOrDefault($"weight_hh_l{l}") ?? throw new NotSupportedException($"Module '{name}' has no weight_hh_l{l}.");
            ReadOnlySpan<float> biasIh = parameters.TryGetValue($"bias_ih_l{l}", out var bi) ? Floats(bi) : default;
            ReadOnlySpan<float> biasHh = parameters.TryGetValue($"bias_hh_l{l}", out var bh) ? Floats(bh) : default;
            layers.Add(module is LSTM
                ? new LstmLayer(Matrix(ih, format), Matrix(hh, format), biasIh, biasHh)
                : new GruLayer(Matrix(ih, format), Matrix(hh, format), biasIh, biasHh));
        }
        return layers;
    }


    private static string Describe(nn.Module model) => model.GetName() is { Length: > 0 } name ? name : model.GetType().Name;
}

/// <summary>What the weights of a transformer do not say: how its forward uses them. The export checks these against the module's own logits.</summary>
public sealed record TransformerExportOptions
{
    /// <summary>Attention heads per block (required).</summary>
    public required int Heads { get; init; }

    /// <summary>True: x + f(LN(x)) (pre-LN, GPT-2). False: LN(x + f(x)) (post-LN).</summary>
    public bool NormFirst { get; init; } = true;

    /// <summary>The MLP's GELU.</summary>
    public GeluApproximation Gelu { get; init; } = GeluApproximation.None;

    /// <summary>
    /// How far the runtime's logits may be from the module's on the check, relative to the module's logit range. The
    /// default catches a wrong head count, norm placement or attention; the two GELUs differ by under 5e-4 anywhere and
    /// may pass for each other at it (a smaller tolerance tells them apart).
    /// </summary>
    public double Tolerance { get; init; } = 1e-4;
}

static partial class SparseExport
{
    /// <summary>Builds the inference model from <paramref name="model"/> and checks it against the module's logits.</summary>
    /// <remarks>
    /// <para>
    /// Turns a pruned decoder-only transformer language model (users' own TorchSharp modules) into a
    /// <see cref="TransformerModel"/> for standalone inference, and writes its file (<see cref="TransformerModel.Save"/>).
    /// Pruned projections, embeddings and the decoder are stored sparse where <see cref="MatrixFormat.Auto"/> says so.
    /// </para>
    /// <para>
    /// The pieces are found among the model's modules in registration order (<c>Dropout</c>, <c>Identity</c> and
    /// activation modules are skipped): an <c>Embedding</c> of tokens; an <c>Embedding</c> of positions (its rows are the
    /// context; a sinusoidal table goes in a frozen <c>Embedding</c>); the blocks (children of a <c>ModuleList</c>, or
    /// consecutive children), each holding, in order, a <c>LayerNorm</c>, the query, key and value <c>Linear</c>s [d, d]
    /// (or one [3·d, d]), the output <c>Linear</c>, a <c>LayerNorm</c>, and the MLP's two <c>Linear</c>s; then an optional
    /// final <c>LayerNorm</c> and a <c>Linear</c> decoder (none, or one sharing the token table's tensor: tied). Anything
    /// else is refused with its name. What the modules cannot show (heads, pre- or post-LN, the GELU, causal attention
    /// scaled by 1/√(d/heads), token + position embeddings unscaled) is checked, not assumed: the module (a
    /// <c>Module&lt;Tensor, Tensor&gt;</c> from [batch, steps] token ids to [batch, steps, vocabulary] logits) and the
    /// exported model run the same probe sequences, and a difference beyond <see cref="TransformerExportOptions.Tolerance"/>
    /// refuses the export, so a forward that does something else is never exported silently.
    /// </para>
    /// </remarks>
    /// <exception cref="NotSupportedException">A module is not part of the supported structure, or the exported model's logits differ from the module's; the message says which.</exception>
    public static TransformerModel ToTransformerModel(nn.Module<Tensor, Tensor> model, TransformerExportOptions options, MatrixFormat format = MatrixFormat.Auto,
        SparseModelOptions? runtime = null)
    {
        TorchHealth.EnsureOnFirstUse();
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Heads < 1) throw new ArgumentOutOfRangeException(nameof(options), options.Heads, "TransformerExportOptions.Heads must be positive.");
        if (!(options.Tolerance > 0)) throw new ArgumentOutOfRangeException(nameof(options), options.Tolerance, "TransformerExportOptions.Tolerance must be positive.");
        // Compressed values (half, int8) move logits by more than a structural mistake would: the check runs on the
        // same structure with exact values, then the model is built in the requested format.
        bool lossy = format is MatrixFormat.CsrFloat16 or MatrixFormat.CsrInt8;
        TransformerModel exported;
        using (torch.no_grad()) exported = Build(model, options, lossy ? MatrixFormat.Csr : format, runtime);
        Check(model, exported, options.Tolerance);
        if (lossy)
            using (torch.no_grad()) exported = Build(model, options, format, runtime);
        return exported;
    }

    /// <summary>Builds and checks the inference model, and saves it to <paramref name="path"/>.</summary>
    public static TransformerModel SaveTransformerModel(nn.Module<Tensor, Tensor> model, string path, TransformerExportOptions options, MatrixFormat format = MatrixFormat.Auto)
    {
        TransformerModel transformer = ToTransformerModel(model, options, format);
        transformer.Save(path);
        return transformer;
    }

    private static bool Skipped(nn.Module m) => m is Dropout or Identity or GELU or ReLU;

    private static TransformerModel Build(nn.Module model, TransformerExportOptions options, MatrixFormat format, SparseModelOptions? runtime)
    {
        var children = model.named_children().Where(c => !Skipped(c.module)).ToList();
        int at = 0;
        (string Name, nn.Module Module) Next(string what, Func<nn.Module, bool> fits)
        {
            if (at >= children.Count || !fits(children[at].module))
                throw new NotSupportedException($"A transformer's children are token Embedding, position Embedding, blocks, [LayerNorm], [Linear decoder]; "
                    + $"expected {what} at {(at < children.Count ? $"'{children[at].name}' ({children[at].module.GetType().Name})" : "the end")}.");
            return children[at++];
        }
        var tokenEmbedding = (Embedding)Next("the token Embedding", m => m is Embedding).Module;
        var positionEmbedding = (Embedding)Next("the position Embedding", m => m is Embedding).Module;
        Tensor tokenWeight = tokenEmbedding.weight!;
        var tokens = new EmbeddingLayer(Matrix(tokenWeight, format));
        var positions = new EmbeddingLayer(Matrix(positionEmbedding.weight!, MatrixFormat.Dense));
        var blocks = new List<TransformerBlock>();
        while (at < children.Count && children[at].module is not (LayerNorm or Linear or Embedding))
        {
            var (name, module) = children[at++];
            IEnumerable<(string, nn.Module)> members = IsModuleList(module)
                ? module.named_children().Select(c => ($"{name}.{c.name}", c.module))
                : [(name, module)];
            foreach (var (blockName, block) in members) blocks.Add(Block(blockName, block, options, format));
        }
        if (blocks.Count == 0) throw new NotSupportedException("The model has no blocks between the position Embedding and the final LayerNorm or decoder.");
        LayerNorm? final = at < children.Count && children[at].module is LayerNorm ? (LayerNorm)children[at++].module : null;
        LinearLayer decoder;
        if (at < children.Count && children[at].module is Linear linear)
        {
            at++;
            bool tied = SameStorage(linear.weight!, tokenWeight);
            decoder = new LinearLayer(tied ? tokens.Table : Matrix(linear.weight!, format), linear.bias is null ? default : Floats(linear.bias));
        }
        else decoder = new LinearLayer(tokens.Table, default);
        if (at < children.Count)
            throw new NotSupportedException($"Module '{children[at].name}' ({children[at].module.GetType().Name}) follows the decoder; a transformer ends with it.");
        return new TransformerModel(tokens, positions, blocks, final is null ? null : Norm("the final LayerNorm", final), decoder, runtime);
    }

    private static TransformerBlock Block(string name, nn.Module block, TransformerExportOptions options, MatrixFormat format)
    {
        var leaves = block.named_modules().Where(m => !m.module.named_children().Any() && !Skipped(m.module)).ToList();
        string Shape() => string.Join(", ", leaves.Select(l => $"'{l.name}' ({l.module.GetType().Name})"));
        if (leaves.Count == 0)
            throw new NotSupportedException($"Block '{name}' ({block.GetType().Name}) exposes no submodules"
                + (block.parameters().Any()
                    ? " yet holds parameters: a native TorchSharp module (such as nn.TransformerEncoderLayer) whose layers the export cannot read or verify; write the block as a Module of your own with LayerNorm and Linear children."
                    : "; a block holds LayerNorms and Linears."));
        foreach (var (leaf, module) in leaves)
            if (module is not (LayerNorm or Linear))
                throw new NotSupportedException($"Block '{name}' holds '{leaf}' ({module.GetType().Name}); a block holds LayerNorms and Linears only ({Shape()}).");
        var norms = leaves.Where(l => l.module is LayerNorm).Select(l => (LayerNorm)l.module).ToList();
        var linears = leaves.Where(l => l.module is Linear).Select(l => (Linear)l.module).ToList();
        bool fused = linears.Count == 4, ordered = leaves.Count > 0 && leaves[0].module is LayerNorm;
        if (norms.Count != 2 || !(linears.Count is 4 or 6) || !ordered || leaves.IndexOf(leaves.First(l => ReferenceEquals(l.module, norms[1]))) != (fused ? 3 : 5))
            throw new NotSupportedException($"Block '{name}' must hold LayerNorm, q/k/v Linear(s), output Linear, LayerNorm, two MLP Linears, in that order; it holds {Shape()}.");
        int d = (int)linears[^1].weight!.shape[0];
        Tensor qkv = fused ? linears[0].weight! : torch.cat([linears[0].weight!, linears[1].weight!, linears[2].weight!], 0);
        float[] qkvBias = fused
            ? linears[0].bias is { } b ? Floats(b) : []
            : linears.Take(3).All(l => l.bias is null) ? []
            : linears.Take(3).SelectMany(l => l.bias is { } lb ? Floats(lb) : new float[d]).ToArray();
        int o = fused ? 1 : 3;
        try
        {
            return new TransformerBlock(Norm($"block '{name}' first LayerNorm", norms[0]), Projection(qkv, qkvBias, format), Projection(linears[o], format), options.Heads,
                Norm($"block '{name}' second LayerNorm", norms[1]), Projection(linears[o + 1], format), Projection(linears[o + 2], format), options.Gelu, options.NormFirst);
        }
        catch (ArgumentException e)
        {
            throw new NotSupportedException($"Block '{name}' does not fit: {e.Message}", e);
        }
    }

    private static Sparse.Sequences.LayerNorm Norm(string what, LayerNorm norm)
    {
        if (norm.normalized_shape.Length != 1)
            throw new NotSupportedException($"{what} normalizes over {norm.normalized_shape.Length} dimensions; only the last one can be.");
        return new Sparse.Sequences.LayerNorm((int)norm.normalized_shape[0], norm.weight is null ? default : Floats(norm.weight),
            norm.bias is null ? default : Floats(norm.bias), (float)norm.eps);
    }

    private static LinearLayer Projection(Linear linear, MatrixFormat format) => Projection(linear.weight!, linear.bias is null ? [] : Floats(linear.bias), format);

    private static LinearLayer Projection(Tensor weight, float[] bias, MatrixFormat format) => new(Matrix(weight, format), bias);

    private static bool IsModuleList(nn.Module module) => module.GetType() is { IsGenericType: true } t && t.GetGenericTypeDefinition() == typeof(ModuleList<>);

    /// <summary>Whether two tensors are one parameter (a tied decoder): the same shape over the same storage.</summary>
    private static bool SameStorage(Tensor a, Tensor b) =>
        a.shape.SequenceEqual(b.shape) && a.device_type == DeviceType.CPU && b.device_type == DeviceType.CPU
        && System.Runtime.CompilerServices.Unsafe.AreSame(ref System.Runtime.InteropServices.MemoryMarshal.GetReference(a.bytes),
            ref System.Runtime.InteropServices.MemoryMarshal.GetReference(b.bytes));


    /// <summary>Runs two probe sequences through the module and the exported model; refuses the export when they disagree.</summary>
    private static void Check(nn.Module<Tensor, Tensor> model, TransformerModel exported, double tolerance)
    {
        const int batch = 2;
        int steps = Math.Min(exported.Context, 13);
        var random = new Random(20261206);
        int[] probe = Enumerable.Range(0, batch * steps).Select(_ => random.Next(exported.Tokens.Vocabulary)).ToArray();
        bool training = model.training;
        float[] theirs;
        try
        {
            model.eval();
            using var _ = torch.no_grad();
            using var scope = torch.NewDisposeScope();
            Tensor logits = model.call(torch.tensor(probe.Select(t => (long)t).ToArray(), [batch, steps]));
            if (!logits.shape.SequenceEqual(new long[] { batch, steps, exported.Outputs }))
                throw new NotSupportedException($"The module maps [{batch}, {steps}] tokens to [{string.Join(", ", logits.shape)}], not [{batch}, {steps}, {exported.Outputs}] logits.");
            theirs = Floats(logits);
        }
        finally
        {
            model.train(training);
        }
        float[] ours = exported.Run(probe, batch, steps);
        double range = theirs.Max() - theirs.Min(), worst = 0;
        int worstAt = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            double difference = Math.Abs(ours[i] - (double)theirs[i]);
            if (!(difference <= worst)) (worst, worstAt) = (difference, i);
        }
        if (!(worst <= tolerance * Math.Max(range, 1e-30)))
            throw new NotSupportedException(
                $"The exported model's logits differ from the module's by up to {worst:G3} (logit range {range:G3}; at sequence {worstAt / (steps * exported.Outputs)}, step {worstAt / exported.Outputs % steps}): "
                + "its forward does something this export does not reproduce. Check TransformerExportOptions (Heads, NormFirst, Gelu) and the remarks of SparseExport.ToTransformerModel (causal attention scaled by 1/√(head size), embeddings added unscaled).");
    }
}
