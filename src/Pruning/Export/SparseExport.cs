using Pruning.Interop;
using Pruning.Sparse;
using Pruning.Structure;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Sequences;
using Pruning.Sparse.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Export;

/// <summary>
/// Turns a pruned TorchSharp model into a model of our runtime for standalone inference, and writes its file:
/// <see cref="ToSparseModel"/> for feed-forward and convolutional networks (<see cref="SparseModel"/>),
/// <see cref="ToSequenceModel(nn.Module, MatrixFormat, SparseModelOptions?)"/> for LSTM/GRU language models
/// (<see cref="SequenceModel"/>) and <see cref="ToTransformerModel"/> for decoder-only transformers
/// (<see cref="TransformerModel"/>); each has a Save form that also writes the file. Export after
/// <see cref="GradualPruner.Strip"/> (or with the masks applied), so pruned weights are exact zeros.
/// </summary>
/// <remarks>
/// For <see cref="ToSparseModel"/> the model is any model whose forward takes one tensor and returns one: a Sequential
/// chain, one with <see cref="Residual"/> blocks, or your own Module classes (TorchVision's ResNet too). Its forward is
/// traced once: its residual adds, channel concatenations and squeeze-and-excitation scalings become residual,
/// concatenation and scaling layers (see <see cref="ChannelGraph"/> for what the trace recognizes). The layers must be
/// Linear, Conv2d (any groups, so depthwise too; zero padding), BatchNorm1d/2d (folded into the Linear or Conv2d before
/// it), ReLU, ReLU6, LeakyReLU, Tanh, Sigmoid, Hardswish, Hardsigmoid, MaxPool2d and AvgPool2d (floor or ceil mode),
/// AdaptiveAvgPool2d(1), Flatten, Dropout and Identity. Anything else is refused with its name.
/// </remarks>
public static partial class SparseExport
{
    /// <summary>
    /// Builds the inference model. <paramref name="input"/> is one sample's shape, e.g. (1, 28, 28) or (784).
    /// <paramref name="format"/> chooses every weight's storage (a block or N:M format must fit every layer; a layer it
    /// does not fit is named); <see cref="MatrixFormat.Auto"/> uses CSR only where it is
    /// sparse enough to be faster: at most <see cref="WeightMatrix.CsrMaxDensity"/> non-zero for Linear and strided
    /// Conv2d, at most <see cref="Conv2dLayer.DirectMaxDensity"/> for stride-1 Conv2d (run by direct sparse convolution).
    /// </summary>
    public static SparseModel ToSparseModel(nn.Module model, FeatureShape input, MatrixFormat format = MatrixFormat.Auto)
    {
        TorchHealth.EnsureOnFirstUse();
        ArgumentNullException.ThrowIfNull(model);
        using var _ = torch.no_grad();
        return new SparseModel(input, Convert(Modules(model, input), format));
    }

    /// <summary>
    /// The modules in the order they run, as one traced forward pass on a random input of <paramref name="input"/>'s
    /// shape gives them (a Sequential being the simplest case; adds, <see cref="Residual"/> blocks included, and
    /// concatenations become branch items).
    /// </summary>
    internal static IEnumerable<(string Name, nn.Module Module)> Modules(nn.Module model, FeatureShape input)
    {
        using var example = ModuleTrace.Example(input.IsVector ? [input.Channels] : [input.Channels, input.Height, input.Width]);
        return TracedChain.From(model, example);
    }

    /// <summary>The runtime layers of a chain (a residual block's branches are chains too).</summary>
    private static List<SparseLayer> Convert(IEnumerable<(string Name, nn.Module Module)> chain, MatrixFormat format)
    {
        var layers = new List<SparseLayer>();
        FoldableLayer? pending = null;
        foreach (var (name, module) in chain)
        {
            if (module is BatchNorm bn)
            {
                if (pending is null)
                    throw new NotSupportedException($"BatchNorm '{name}' does not follow a Linear or Conv2d, so it cannot be folded into one.");
                pending.Fold(bn, name);
                continue;
            }
            if (pending is not null) { layers.Add(Build(pending, format)); pending = null; }
            switch (module)
            {
                case Linear linear:
                    pending = FoldableLayer.From(name, linear);
                    break;
                case Conv2d conv:
                    pending = FoldableLayer.From(name, conv);
                    break;
                case TracedBranches { How: TracedBranches.Combine.Scale } scale:
                    if (scale.Branches[0].Count > 0 || scale.Branches[1].Count == 0)
                        throw new NotSupportedException($"'{name}' scales channels by factors, but not the tensor it computes them from (squeeze-and-excitation scales its own input); that cannot be exported.");
                    layers.Add(new ScaleLayer(Convert(scale.Branches[1], format)));
                    break;
                case TracedBranches { How: TracedBranches.Combine.Add } add:
                    // The longer branch is the main one; an empty one is the identity shortcut.
                    var (main, shortcut) = (Convert(add.Branches[0], format), Convert(add.Branches[1], format));
                    if (main.Count < shortcut.Count) (main, shortcut) = (shortcut, main);
                    if (main.Count == 0)
                    {
                        string inside = string.Join(", ", add.Branches.SelectMany(b => b).Select(m => $"'{m.Name}'"));
                        throw new NotSupportedException($"'{name}' adds a tensor to itself{(inside.Length > 0 ? $" (its branches hold only {inside}, identities in inference)" : "")}; the runtime has no layer for that.");
                    }
                    layers.Add(new ResidualLayer(main, shortcut.Count == 0 ? null : shortcut));
                    break;
                case TracedBranches concat:
                    layers.Add(new ConcatLayer(concat.Branches.Select(b => (IReadOnlyList<SparseLayer>)Convert(b, format)).ToArray()));
                    break;
                case ReLU: layers.Add(new ActivationLayer(ActivationKind.ReLU)); break;
                case ReLU6: layers.Add(new ActivationLayer(ActivationKind.ReLU6)); break;
                case LeakyReLU leaky: layers.Add(new ActivationLayer(ActivationKind.LeakyReLU, (float)leaky.negative_slope)); break;
                case Tanh: layers.Add(new ActivationLayer(ActivationKind.Tanh)); break;
                case Sigmoid: layers.Add(new ActivationLayer(ActivationKind.Sigmoid)); break;
                case Hardswish: layers.Add(new ActivationLayer(ActivationKind.Hardswish)); break;
                case Hardsigmoid: layers.Add(new ActivationLayer(ActivationKind.Hardsigmoid)); break;
                case MaxPool2d max:
                    if (max.dilation is { } d && d.Any(v => v != 1)) throw new NotSupportedException($"MaxPool2d '{name}' is dilated; only dilation 1 is supported.");
                    layers.Add(new Pool2dLayer(PoolKind.Max, Pair(max.kernel_size), Pair(max.stride ?? max.kernel_size), Pair(max.padding, 0), ceilMode: max.ceil_mode));
                    break;
                case AvgPool2d avg:
                    if (avg.divisor_override is not null) throw new NotSupportedException($"AvgPool2d '{name}' overrides the divisor; that is not supported.");
                    layers.Add(new Pool2dLayer(PoolKind.Average, Pair(avg.kernel_size), Pair(avg.stride ?? avg.kernel_size), Pair(avg.padding, 0), avg.count_include_pad, avg.ceil_mode));
                    break;
                case AdaptiveAvgPool2d adaptive:
                    if (adaptive.output_size.Any(v => v != 1))
                        throw new NotSupportedException($"AdaptiveAvgPool2d '{name}' has output size [{string.Join(", ", adaptive.output_size)}]; only 1 (global average pooling) is supported.");
                    layers.Add(new GlobalAveragePoolLayer());
                    break;
                case Flatten flatten:
                    if (flatten.start_dim != 1 || flatten.end_dim != -1) throw new NotSupportedException($"Flatten '{name}' flattens dims {flatten.start_dim}..{flatten.end_dim}; only 1..-1 is supported.");
                    layers.Add(new FlattenLayer());
                    break;
                case Dropout or Dropout2d or Identity:
                    break;
                default:
                    if (ModuleHandlers.For(module)?.ToRuntime(module) is { } lowered)
                    {
                        layers.AddRange(lowered);
                        break;
                    }
                    throw new NotSupportedException($"Module '{name}' ({module.GetType().Name}) cannot be exported; supported: Linear, Conv2d, BatchNorm1d/2d after them, Residual, ReLU, ReLU6, LeakyReLU, Tanh, Sigmoid, Hardswish, Hardsigmoid, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), Flatten, Dropout, Identity.");
            }
        }
        if (pending is not null) layers.Add(Build(pending, format));
        return layers;
    }

    /// <summary>Builds the inference model and saves it to <paramref name="path"/> (see <see cref="SparseModel.Save"/>).</summary>
    public static SparseModel Save(nn.Module model, FeatureShape input, string path, MatrixFormat format = MatrixFormat.Auto)
    {
        SparseModel sparse = ToSparseModel(model, input, format);
        sparse.Save(path);
        return sparse;
    }

    /// <summary>
    /// Writes every parameter and buffer of <paramref name="model"/> to a safetensors file; weights with at least two
    /// dimensions go in compressed-tensors' sparse-bitmask layout (docs/how-to/deploy-on-the-runtime.md, "Interchange", lists its tensors).
    /// </summary>
    public static void SaveSafeTensors(nn.Module model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var _ = torch.no_grad();
        var tensors = model.named_parameters().Select(p => (p.name, t: (Tensor)p.parameter, weight: p.parameter.dim() >= 2))
            .Concat(model.named_buffers().Where(b => b.buffer.is_floating_point()).Select(b => (b.name, t: b.buffer, weight: false)))
            .Select(e => new NamedTensor(e.name, e.t.shape, Floats(e.t), e.weight));
        SafeTensorsBitmask.Write(path, tensors);
    }

    /// <summary>The weight names of the Linear and Conv2d layers of the exported model's top-level chain, in order.</summary>
    internal static IReadOnlyList<string> WeightNames(nn.Module model, FeatureShape input) =>
        Modules(model, input).Where(c => c.Module is Linear or Conv2d).Select(c => $"{c.Name}.weight").ToArray();

    private static SparseLayer Build(FoldableLayer layer, MatrixFormat format)
    {
        try
        {
            return layer.Conv is { } c
                ? Conv2dLayer.FromDense(layer.Weight, layer.Rows, layer.Bias, c.InChannels, c.Kernel, c.Stride, c.Padding, c.Dilation, format, c.Groups)
                : new LinearLayer(WeightMatrix.FromDense(layer.Weight, layer.Rows, layer.Weight.Length / layer.Rows, format), layer.Bias);
        }
        catch (ArgumentException e) when (e.ParamName is "block" or "pattern" or "dense")
        {
            throw new ArgumentException($"Layer '{layer.Name}' cannot be stored as {format}: {SparseModelFile.Bare(e)}", nameof(format), e);
        }
    }

    private static (int, int) Pair(long[]? values, int fallback = 1) =>
        values is null ? (fallback, fallback) : values.Length == 1 ? ((int)values[0], (int)values[0]) : ((int)values[0], (int)values[1]);

    internal static float[] Floats(Tensor t)
    {
        using var cpu = t.detach().cpu().to_type(ScalarType.Float32).contiguous();
        return cpu.data<float>().ToArray();
    }

    /// <summary>A weight tensor [rows, …] as a matrix [rows, the rest] in <paramref name="format"/>.</summary>
    internal static WeightMatrix Matrix(Tensor weight, MatrixFormat format) =>
        WeightMatrix.FromDense(Floats(weight), (int)weight.shape[0], (int)(weight.numel() / weight.shape[0]), format);
}
