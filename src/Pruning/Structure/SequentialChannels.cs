using Pruning.Interop;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Structure;

/// <summary>
/// One layer whose output channels can be removed: a Conv2d's filters or a Linear's neurons, together with the
/// BatchNorm that follows it and the matching inputs of the next Conv2d or Linear.
/// </summary>
/// <param name="Producer">The Conv2d or Linear whose outputs are the channels (e.g. <c>conv1</c>).</param>
/// <param name="BatchNorm">The BatchNorm right after it, if any.</param>
/// <param name="Consumer">The next Conv2d or Linear, which reads the channels.</param>
/// <param name="Channels">Output channels of the producer.</param>
/// <param name="InputsPerChannel">Consumer inputs per channel: 1, or H·W when a Flatten sits between a Conv2d and a Linear.</param>
public sealed record ChannelLayer(string Producer, string? BatchNorm, string Consumer, long Channels, long InputsPerChannel)
{
    /// <summary>The producer's weight, the parameter a channel granularity prunes (e.g. <c>conv1.weight</c>).</summary>
    public string Weight => $"{Producer}.weight";

    /// <summary>
    /// Depthwise convolutions (groups = channels) between the producer and the consumer, and the BatchNorm right after
    /// each: channel c of each is channel c of the producer, so they are pruned and removed with it (a dependency group
    /// in Torch-Pruning's terms).
    /// </summary>
    public IReadOnlyList<string> ChannelWise { get; init; } = [];

    /// <summary>Equal when every field is, <see cref="ChannelWise"/> compared element by element.</summary>
    public bool Equals(ChannelLayer? other) =>
        other is not null && Producer == other.Producer && BatchNorm == other.BatchNorm && Consumer == other.Consumer &&
        Channels == other.Channels && InputsPerChannel == other.InputsPerChannel && ChannelWise.SequenceEqual(other.ChannelWise);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Producer, BatchNorm, Consumer, Channels, InputsPerChannel, ChannelWise.Count);
}

/// <summary>
/// The channel structure of a <c>Sequential</c> chain of Conv2d, BatchNorm, activations that map 0 to 0, pooling,
/// Dropout, Flatten and Linear layers: which channels are pruned together, and how to remove them for real.
/// </summary>
/// <remarks>
/// Pass it as <see cref="PruningOptions.Channels"/> with an output-channel granularity. A pruned channel then has its
/// filter, its bias and its BatchNorm scale and shift zeroed together, so it outputs exactly zero, and
/// <see cref="Shrink"/> can drop it (and the next layer's inputs for it) without changing the model's outputs.
/// Depthwise convolutions (groups = in = out channels, MobileNet's) pass their channels through: channel c of the
/// producer before them, of the depthwise filter and its BatchNorm, and the consumer's input c are one group.
/// Inside a <see cref="Residual"/> block, the inner channels of its main branch are removable; the channels that meet
/// at its add (the block's input and output, and so the producer feeding it) form one dependency group and are kept.
/// Graphs that are not such chains (concatenations, other grouped convolutions, other containers) are out of scope:
/// <see cref="Analyze"/> refuses them, naming the module, rather than return a wrong model.
/// </remarks>
public sealed class SequentialChannels : ChannelStructure
{
    /// <summary>Modules that act on each channel alone and map 0 to 0, so a dead channel stays dead through them.</summary>
    internal static readonly HashSet<Type> PassThrough =
    [
        typeof(ReLU), typeof(ReLU6), typeof(LeakyReLU), typeof(ELU), typeof(GELU), typeof(SiLU), typeof(Tanh), typeof(Hardswish),
        typeof(MaxPool2d), typeof(AvgPool2d), typeof(AdaptiveAvgPool2d), typeof(Dropout), typeof(Dropout2d), typeof(Identity),
    ];

    private readonly Sequential _model;
    private readonly List<(string Name, nn.Module Module)> _children;

    private SequentialChannels(Sequential model, List<(string, nn.Module)> children, List<ChannelLayer> layers)
    {
        _model = model;
        _children = children;
        Layers = layers;
    }

    /// <summary>The model this structure was analyzed from.</summary>
    internal Sequential Model => _model;

    /// <summary>The layers whose channels can be pruned, in order (the last Conv2d/Linear, the model's output, is not one).</summary>
    public IReadOnlyList<ChannelLayer> Layers { get; }

    /// <summary>Finds the channel structure of <paramref name="model"/>.</summary>
    /// <exception cref="NotSupportedException">A module is not part of a supported chain; the message names it.</exception>
    public static SequentialChannels Analyze(Sequential model)
    {
        TorchHealth.EnsureOnFirstUse();
        ArgumentNullException.ThrowIfNull(model);
        var children = model.named_children().ToList();
        var layers = new List<ChannelLayer>();
        AnalyzeChain(children, "", layers);
        return new SequentialChannels(model, children, layers);
    }

    /// <summary>
    /// The channel layers of one chain, named with <paramref name="prefix"/>. A <see cref="Residual"/> block's main
    /// branch is a chain of its own: its inner channels (every producer but the last, whose outputs meet the shortcut
    /// at the add) are removable; the channels on either side of the add are one dependency group, which is not
    /// removed, so the producer feeding a block keeps its channels too.
    /// </summary>
    private static void AnalyzeChain(List<(string Name, nn.Module Module)> children, string prefix, List<ChannelLayer> layers)
    {
        foreach (var (name, module) in children)
        {
            bool known = module is Conv2d or Linear or BatchNorm2d or BatchNorm1d or Flatten or Residual || PassThrough.Contains(module.GetType());
            if (!known)
                throw new NotSupportedException(
                    $"Channel structure is defined for Sequential chains of Conv2d, BatchNorm, activations with f(0) = 0, pooling, Dropout, Flatten, Linear and Residual blocks; '{prefix}{name}' is a {module.GetType().Name}.");
            if (module is Conv2d { groups: not 1 } grouped && !IsDepthwise(grouped))
                throw new NotSupportedException($"'{prefix}{name}' is a grouped convolution (groups = {grouped.groups}) that is not depthwise (groups = in = out channels); its channels cannot be removed independently.");
            if (module is Residual residual)
            {
                AnalyzeChain(residual.Main.named_children().ToList(), $"{prefix}{name}.main.", layers);
                if (residual.Shortcut is { } shortcut) AnalyzeChain(shortcut.named_children().ToList(), $"{prefix}{name}.shortcut.", layers);
            }
        }

        for (int i = 0; i < children.Count; i++)
        {
            if (!IsProducer(children[i].Item2))
                continue;
            long channels = children[i].Item2 is Conv2d conv ? conv.out_channels : ((Linear)children[i].Item2).out_features;
            string? batchNorm = i + 1 < children.Count && children[i + 1].Item2 is BatchNorm2d or BatchNorm1d ? prefix + children[i + 1].Item1 : null;
            int next = children.FindIndex(i + 1, c => IsProducer(c.Item2) || c.Item2 is Residual);
            if (next < 0 || children[next].Item2 is Residual)
                continue; // the output layer (its channels are the outputs), or one whose channels a residual add ties to others
            var channelWise = new List<string>();
            for (int j = i + 1; j < next; j++)
            {
                if (children[j].Item2 is not Conv2d depthwise) continue;
                if (depthwise.in_channels != channels)
                    throw new NotSupportedException($"Depthwise '{prefix}{children[j].Item1}' has {depthwise.in_channels} channels but '{prefix}{children[i].Item1}' produces {channels}.");
                channelWise.Add(prefix + children[j].Item1);
                if (j + 1 < next && children[j + 1].Item2 is BatchNorm2d) channelWise.Add(prefix + children[j + 1].Item1);
            }
            long perChannel = 1;
            if (children[next].Item2 is Linear consumer && children[i].Item2 is Conv2d)
            {
                if (consumer.in_features % channels != 0)
                    throw new NotSupportedException($"'{prefix}{children[next].Item1}' has {consumer.in_features} inputs, not a multiple of the {channels} channels of '{prefix}{children[i].Item1}'.");
                perChannel = consumer.in_features / channels;
            }
            layers.Add(new ChannelLayer(prefix + children[i].Item1, batchNorm, prefix + children[next].Item1, channels, perChannel) { ChannelWise = channelWise });
        }
    }

    /// <summary>A depthwise convolution: one filter per channel, as many outputs as inputs.</summary>
    internal static bool IsDepthwise(Conv2d conv) => conv.groups > 1 && conv.groups == conv.in_channels && conv.out_channels == conv.in_channels;

    /// <summary>A layer whose output channels are its own: a Linear, or a Conv2d that is not depthwise.</summary>
    private static bool IsProducer(nn.Module module) => module is Linear || module is Conv2d conv && !IsDepthwise(conv);

    /// <summary>The 1-D parameters that share a producer weight's output channels: its bias and the BatchNorm's scale and shift.</summary>
    internal override IReadOnlyList<string> CoupledWith(string weightName)
    {
        ChannelLayer? layer = Layers.FirstOrDefault(l => l.Weight == weightName);
        if (layer is null)
            return [];
        var names = new List<string>();
        if (Module(layer.Producer) is Conv2d { bias: not null } or Linear { bias: not null }) names.Add($"{layer.Producer}.bias");
        if (layer.BatchNorm is not null) names.AddRange([$"{layer.BatchNorm}.weight", $"{layer.BatchNorm}.bias"]);
        foreach (string through in layer.ChannelWise)
        {
            nn.Module module = Module(through);
            if (module is Conv2d depthwise)
            {
                names.Add($"{through}.weight");
                if (depthwise.bias is not null) names.Add($"{through}.bias");
            }
            else if (module is BatchNorm { affine: true }) names.AddRange([$"{through}.weight", $"{through}.bias"]);
        }
        return names;
    }

    /// <summary>The layer whose producer weight is <paramref name="weightName"/>, or null.</summary>
    public ChannelLayer? LayerOf(string weightName) => Layers.FirstOrDefault(l => l.Weight == weightName);

    /// <inheritdoc />
    public override Tensor BatchNormL1Penalty(double strength) =>
        L1Penalty(_model, Layers.Where(l => l.BatchNorm is not null).Select(l => $"{l.BatchNorm}.weight"), strength);

    /// <summary>
    /// A new, physically smaller model: every channel that outputs exactly zero (BatchNorm scale and shift zero, or,
    /// without a BatchNorm, filter and bias zero) is removed with the next layer's inputs for it. The original model
    /// is left as it is. Its outputs equal the original's up to float rounding; use it for inference.
    /// </summary>
    public Sequential Shrink()
    {
        using var noGrad = torch.no_grad();
        // Module parameters never join a dispose scope, so everything else made here (index tensors, selections, and
        // the temporaries TorchSharp's own layer constructors leave behind) is disposed when this returns.
        using var scope = torch.NewDisposeScope();
        var alive = Layers.ToDictionary(l => l.Producer, AliveChannels);
        var result = ShrinkChain(_children, "", alive);
        if (!_model.training) result.eval();
        return result;
    }

    /// <summary>One chain rebuilt with its removed channels gone; a residual block's branches are chains of their own.</summary>
    private Sequential ShrinkChain(List<(string Name, nn.Module Module)> children, string prefix, Dictionary<string, long[]> alive)
    {
        var built = new List<(string, nn.Module<Tensor, Tensor>)>();
        long[]? incoming = null; // the channels of the previous producer that survive, as consumer input indices
        long perChannel = 1;
        for (int i = 0; i < children.Count; i++)
        {
            var (name, module) = children[i];
            long[]? outputs = alive.GetValueOrDefault(prefix + name);
            switch (module)
            {
                case Residual residual:
                    // Its input and output channels are a residual group, never removed: only the inner ones change.
                    built.Add((name, new Residual(ShrinkChain(residual.Main.named_children().ToList(), $"{prefix}{name}.main.", alive),
                        residual.Shortcut is null ? null : ShrinkChain(residual.Shortcut.named_children().ToList(), $"{prefix}{name}.shortcut.", alive))));
                    (incoming, perChannel) = (null, 1);
                    break;
                case Conv2d depthwise when IsDepthwise(depthwise):
                    built.Add((name, ShrinkDepthwise(depthwise, incoming)));   // its channels are the incoming ones
                    break;
                case Conv2d conv:
                    built.Add((name, ShrinkConv(conv, incoming, outputs)));
                    (incoming, perChannel) = (outputs, 1);
                    break;
                case Linear linear:
                    built.Add((name, ShrinkLinear(linear, Expand(incoming, perChannel), outputs)));
                    (incoming, perChannel) = (outputs, 1);
                    break;
                case BatchNorm2d or BatchNorm1d:
                    built.Add((name, ShrinkBatchNorm((BatchNorm)module, incoming)));
                    break;
                case Flatten when incoming is not null:
                    ChannelLayer layer = Layers.First(l => l.Consumer == prefix + children.Skip(i).First(c => c.Item2 is Linear).Item1);
                    perChannel = layer.InputsPerChannel;
                    built.Add((name, (nn.Module<Tensor, Tensor>)module));
                    break;
                default:
                    built.Add((name, (nn.Module<Tensor, Tensor>)module));
                    break;
            }
        }
        var result = nn.Sequential(built);
        if (!_model.training) result.eval();
        return result;
    }

    private long[] AliveChannels(ChannelLayer layer)
    {
        using var scope = torch.NewDisposeScope();
        Tensor dead;
        if (layer.BatchNorm is not null)
        {
            var bn = (BatchNorm)Module(layer.BatchNorm);
            dead = bn.weight!.eq(Scalars.Zero).logical_and(bn.bias!.eq(Scalars.Zero));
        }
        else
        {
            Parameter weight = _model.get_parameter(layer.Weight)!;
            dead = weight.reshape(weight.shape[0], -1).ne(Scalars.Zero).any(1).logical_not();
            if (_model.get_parameter($"{layer.Producer}.bias") is { } bias)
                dead = dead.logical_and(bias.eq(Scalars.Zero));
        }
        long[] kept = dead.logical_not().nonzero().flatten().cpu().data<long>().ToArray();
        // Keep one channel so that every layer still has an input.
        return kept.Length > 0 ? kept : [0];
    }

    private static long[]? Expand(long[]? channels, long perChannel) =>
        channels?.SelectMany(c => Enumerable.Range(0, (int)perChannel).Select(k => c * perChannel + k)).ToArray();

    private static Conv2d ShrinkConv(Conv2d conv, long[]? inputs, long[]? outputs)
    {
        long[] padding = conv.padding ?? throw new NotSupportedException($"A Conv2d with symbolic padding ({conv.padding_type}) cannot be shrunk; give it explicit padding.");
        var result = nn.Conv2d(inputs?.Length ?? conv.in_channels, outputs?.Length ?? conv.out_channels, (conv.kernel_size[0], conv.kernel_size[1]),
            stride: (conv.stride[0], conv.stride[1]), padding: (padding[0], padding[1]), dilation: (conv.dilation[0], conv.dilation[1]),
            padding_mode: conv.padding_mode, bias: conv.bias is not null, device: conv.weight!.device, dtype: conv.weight.dtype);
        CopySelected(conv.weight!, conv.bias, result.weight!, result.bias, inputs, outputs);
        return result;
    }

    private static Conv2d ShrinkDepthwise(Conv2d conv, long[]? channels)
    {
        long[] padding = conv.padding ?? throw new NotSupportedException($"A Conv2d with symbolic padding ({conv.padding_type}) cannot be shrunk; give it explicit padding.");
        long count = channels?.Length ?? conv.in_channels;
        var result = nn.Conv2d(count, count, (conv.kernel_size[0], conv.kernel_size[1]),
            stride: (conv.stride[0], conv.stride[1]), padding: (padding[0], padding[1]), dilation: (conv.dilation[0], conv.dilation[1]),
            padding_mode: conv.padding_mode, groups: count, bias: conv.bias is not null, device: conv.weight!.device, dtype: conv.weight.dtype);
        CopySelected(conv.weight!, conv.bias, result.weight!, result.bias, null, channels);
        return result;
    }

    private static Linear ShrinkLinear(Linear linear, long[]? inputs, long[]? outputs)
    {
        var result = nn.Linear(inputs?.Length ?? linear.in_features, outputs?.Length ?? linear.out_features, hasBias: linear.bias is not null,
            device: linear.weight!.device, dtype: linear.weight.dtype);
        CopySelected(linear.weight!, linear.bias, result.weight!, result.bias, inputs, outputs);
        return result;
    }

    /// <summary>Copies the kept rows (outputs) and columns (inputs) of a weight, and the kept bias entries, into a smaller layer's.</summary>
    private static void CopySelected(Tensor weight, Tensor? bias, Tensor toWeight, Tensor? toBias, long[]? inputs, long[]? outputs)
    {
        using var scope = torch.NewDisposeScope();
        toWeight.copy_(ModuleSurgery.Selected(weight, outputs, inputs));
        if (bias is not null && toBias is not null) toBias.copy_(ModuleSurgery.Selected(bias, outputs, null));
    }

    private static nn.Module<Tensor, Tensor> ShrinkBatchNorm(BatchNorm bn, long[]? channels)
    {
        long[] keep = channels ?? Enumerable.Range(0, (int)bn.num_features).Select(c => (long)c).ToArray();
        Device device = (bn.weight ?? bn.running_mean)?.device ?? torch.CPU;
        ScalarType dtype = (bn.weight ?? bn.running_mean)?.dtype ?? ScalarType.Float32;
        nn.Module<Tensor, Tensor> result = bn is BatchNorm2d
            ? nn.BatchNorm2d(keep.Length, bn.eps, bn.momentum ?? 0.1, bn.affine, bn.track_running_stats, device, dtype)
            : nn.BatchNorm1d(keep.Length, bn.eps, bn.momentum ?? 0.1, bn.affine, bn.track_running_stats, device, dtype);
        var target = (BatchNorm)result;
        using var scope = torch.NewDisposeScope();
        using var index = torch.tensor(keep, device: device);
        if (bn.affine)
        {
            target.weight!.copy_(bn.weight!.index_select(0, index));
            target.bias!.copy_(bn.bias!.index_select(0, index));
        }
        if (bn.track_running_stats)
        {
            target.running_mean!.copy_(bn.running_mean!.index_select(0, index));
            target.running_var!.copy_(bn.running_var!.index_select(0, index));
        }
        return result;
    }

    /// <summary>|γ| of the BatchNorm after the layer whose weight is <paramref name="weightName"/>.</summary>
    internal override Tensor BatchNormScale(string weightName)
    {
        ChannelLayer layer = LayerOf(weightName)
            ?? throw new InvalidOperationException($"'{weightName}' is not the weight of a channel layer of this model; channel layers: {string.Join(", ", Layers.Select(l => l.Weight))}.");
        if (layer.BatchNorm is null)
            throw new InvalidOperationException($"'{layer.Producer}' is not followed by a BatchNorm, so it has no scales to rank its channels by.");
        return _model.get_parameter($"{layer.BatchNorm}.weight")!.detach().abs();
    }

    /// <summary>A module of the model by its dotted name (e.g. <c>block1.main.bn1</c>).</summary>
    private nn.Module Module(string name) => _model.named_modules().First(m => m.name == name).module;
}
