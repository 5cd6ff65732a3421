using System.Text.RegularExpressions;
using Pruning.Interop;
using Pruning.Sparse;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Sequences;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Export;

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
