using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Analysis;

/// <summary>
/// Multiply-accumulates of a Sequential chain's Conv2d and Linear layers when some layers keep fewer output channels:
/// the FLOPs budget of channel pruning (a layer's MACs scale with its kept inputs × kept outputs).
/// </summary>
public static class ChannelCost
{
    /// <summary>
    /// One Conv2d or Linear of the chain: MACs per (input channel × output channel), and its shape. A depthwise
    /// convolution's UnitMacs are per channel: it keeps the channels it receives.
    /// </summary>
    internal sealed record Layer(string Weight, bool Conv, long InChannels, long OutChannels, long Kernel, long Stride, long UnitMacs, bool Depthwise = false);

    /// <summary>
    /// The MACs of one sample through <paramref name="model"/>'s Conv2d and Linear layers, with each layer named in
    /// <paramref name="kept"/> (by weight name, e.g. <c>conv2.weight</c>) keeping that many output channels and the
    /// next layer's inputs shrinking with it.
    /// </summary>
    /// <param name="model">The chain.</param>
    /// <param name="inputShape">One sample's shape, e.g. [1, 28, 28].</param>
    /// <param name="kept">Output channels kept per layer; layers not named keep all.</param>
    public static double Macs(Sequential model, long[] inputShape, IReadOnlyDictionary<string, long>? kept = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputShape);
        return Macs(Geometry(model, inputShape), kept ?? new Dictionary<string, long>());
    }

    /// <summary>
    /// A cost table in MACs instead of milliseconds, keyed like <see cref="LatencyTable.MeasureDense"/>'s (each layer at
    /// any input/output channel counts): pass it to <see cref="ChannelNetAdapt"/> (or anything that takes a
    /// <see cref="LatencyTable"/>) to search under a FLOPs budget.
    /// </summary>
    public static LatencyTable Table(Sequential model, long[] inputShape)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputShape);
        var geometry = Geometry(model, inputShape);
        if (geometry.Count == 0) throw new ArgumentException("The model has no Conv2d or Linear layer.", nameof(model));
        if (geometry.FirstOrDefault(l => l.Depthwise) is { } dw)
            throw new NotSupportedException($"'{dw.Weight}' is depthwise: a MAC table prices each layer by its own channel counts, and a depthwise layer's follow its producer's; use ChannelCost.Macs (or AMC's FLOPs budget) for such chains.");
        var units = geometry.ToDictionary(l => l.Weight, l => l.UnitMacs);
        return new LatencyTable(geometry.Select(l => new LatencyLayer(l.Weight, l.InChannels, l.OutChannels)).ToList(), 1,
            measure: v => v.Sparsity == 0 ? (double)units[v.Layer] * v.InChannels * v.OutChannels
                : throw new NotSupportedException($"A MAC table counts dense layers; '{v.Layer}' was asked for at sparsity {v.Sparsity}."));
    }

    /// <summary>Each Conv2d and Linear in order, from one forward pass of a zero sample.</summary>
    internal static IReadOnlyList<Layer> Geometry(Sequential model, long[] inputShape)
    {
        var layers = new List<Layer>();
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        Tensor x = torch.zeros([1, .. inputShape]);
        long previous = -1;
        foreach (var (name, child) in model.named_children())
        {
            if (child is Structure.Residual)
                throw new NotSupportedException($"'{name}' is a residual block; channel costs are counted for plain chains (depthwise convolutions included), not yet across residual adds.");
            Tensor y = ((nn.Module<Tensor, Tensor>)child).call(x);
            switch (child)
            {
                case Conv2d conv:
                    long k = conv.kernel_size[0] * conv.kernel_size[1];
                    bool depthwise = Structure.SequentialChannels.IsDepthwise(conv);
                    if (conv.groups > 1 && !depthwise)
                        throw new NotSupportedException($"'{name}' is a grouped convolution (groups = {conv.groups}) that is not depthwise; channel costs cover ordinary and depthwise convolutions.");
                    layers.Add(new Layer($"{name}.weight", true, conv.in_channels, conv.out_channels, k, conv.stride[0],
                        k * y.shape[2] * y.shape[3], depthwise));
                    previous = conv.out_channels;
                    break;
                case Linear linear:
                    long inChannels = previous > 0 && linear.in_features % previous == 0 ? previous : linear.in_features;
                    layers.Add(new Layer($"{name}.weight", false, inChannels, linear.out_features, 1, 1, linear.in_features / inChannels));
                    previous = linear.out_features;
                    break;
            }
            x = y;
        }
        return layers;
    }

    internal static double Macs(IReadOnlyList<Layer> layers, IReadOnlyDictionary<string, long> kept)
    {
        double macs = 0;
        long previous = -1;
        foreach (Layer layer in layers)
        {
            long inKept = previous < 0 ? layer.InChannels : previous;
            if (layer.Depthwise)
            {
                macs += (double)layer.UnitMacs * inKept;   // one filter per channel it receives; passes them on
                previous = inKept;
                continue;
            }
            long outKept = kept.TryGetValue(layer.Weight, out long k) ? k : layer.OutChannels;
            macs += (double)layer.UnitMacs * inKept * outKept;
            previous = outKept;
        }
        return macs;
    }
}
