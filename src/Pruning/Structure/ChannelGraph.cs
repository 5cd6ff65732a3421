using Pruning.Grouping;
using Pruning.Interop;
using Pruning.Selection;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Structure;

/// <summary>
/// The channel structure of any model, read from one forward pass: which channels must be pruned and removed
/// together (<see cref="Groups"/>), as Torch-Pruning's dependency graph finds them. The two inputs of a residual add
/// are one group; each part of a concatenation keeps its own group and its readers lose the matching inputs; a
/// depthwise convolution and a BatchNorm act on the group of their input.
/// </summary>
/// <remarks>
/// <para>
/// The model can be your own <c>Module</c> classes with a hand-written forward (TorchVision's ResNet, MobileNet and
/// Inception included): hooks on the leaf modules record what each reads, and adds, concatenations, functional ReLUs,
/// flattens and poolings, and squeeze-and-excitation scalings between them are recognized from the tensors. A tensor
/// no such operation explains is refused, naming the module that reads it. Channels that cannot be removed safely are
/// kept, with the reason in <see cref="Kept"/>: the model's input and output, grouped (non-depthwise) convolutions,
/// layers the analysis does not know, and BatchNorms or depthwise convolutions over a concatenation.
/// </para>
/// <para>
/// Use it as <see cref="PruningOptions.Channels"/> with <see cref="PruningGranularity.OutputChannels"/> and
/// <c>Targets = PruningTargets.Default.Include(graph.Weights)</c>: one weight per group is targeted and every layer of
/// the group follows its mask; the group is scored as one (each producer's row norms divided by their mean,
/// averaged). Then <see cref="ShrinkInPlace"/> removes the dead channels for real.
/// </para>
/// <para>The trace assumes forward runs the same modules for every input (no data-dependent branches).</para>
/// </remarks>
public sealed class ChannelGraph
{
    private readonly nn.Module _model;
    private readonly Dictionary<string, nn.Module> _modules;
    private readonly ChannelSpaces _spaces;
    private readonly Dictionary<string, ChannelGroup> _byWeight;
    private readonly Dictionary<string, int> _rootOf;
    private readonly Tensor _example;
    private bool _shrunk;

    private ChannelGraph(nn.Module model, Dictionary<string, nn.Module> modules, ChannelSpaces spaces, Tensor example)
    {
        _model = model;
        _example = example;
        _modules = modules;
        _spaces = spaces;
        var roots = spaces.GroupRoots().ToList();
        Groups = roots.Select(r => r.Group).ToArray();
        _byWeight = Groups.ToDictionary(g => g.Weight);
        _rootOf = roots.ToDictionary(r => r.Group.Weight, r => r.Root);
        Kept = spaces.Kept();
    }

    /// <summary>The groups whose channels can be pruned, in the order their first layer runs.</summary>
    public IReadOnlyList<ChannelGroup> Groups { get; }

    /// <summary>The weight each group is targeted by: pass them to <c>PruningTargets.Default.Include</c>.</summary>
    public IReadOnlyList<string> Weights => Groups.Select(g => g.Weight).ToArray();

    /// <summary>The layers whose output channels are kept whole, each with the reason.</summary>
    public IReadOnlyDictionary<string, string> Kept { get; }

    /// <summary>
    /// Traces <paramref name="model"/> on <paramref name="exampleInput"/> (one forward pass in eval mode without
    /// gradients, on a batch of the example, the example × 10 and the example with every other sign flipped, each
    /// explanation holding on all three; the model's mode is restored) and finds its dependency groups. Real data makes
    /// the best example: an operation that is an identity on all three inputs is invisible to the trace.
    /// </summary>
    /// <param name="model">A <c>Module&lt;Tensor, Tensor&gt;</c>: a Sequential, a TorchVision model, your own class.</param>
    /// <param name="exampleInput">An input of the shape the model is used with, e.g. [1, 3, 224, 224]; random values are best.</param>
    /// <exception cref="NotSupportedException">The trace cannot explain a tensor, a layer with parameters is of an unknown type or called twice, or a module's output is zero on every traced input; the message names the module.</exception>
    public static ChannelGraph Trace(nn.Module model, Tensor exampleInput)
    {
        TorchHealth.EnsureOnFirstUse();
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(exampleInput);
        if (model is not nn.Module<Tensor, Tensor>)
            throw new ArgumentException($"The model is a {model.GetType().Name}; a traced model takes one tensor and returns one.", nameof(model));
        if (exampleInput.dim() < 2)
            throw new ArgumentException($"The example input has shape [{string.Join(", ", exampleInput.shape)}]; give a batch: [N, features] or [N, C, H, W].", nameof(exampleInput));
        if (!model.children().Any())
            throw new ArgumentException($"The model is a single {model.GetType().Name}: it has no channels between layers to prune.", nameof(model));
        ModuleTrace trace = ModuleTrace.Run(model, exampleInput);
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        return new ChannelGraph(model, modules, ChannelSpaces.Analyze(trace, modules), exampleInput.detach().clone().DetachFromDisposeScope());
    }

    /// <summary>
    /// The parameters whose first dimension is the channels of <paramref name="weightName"/> and that are zeroed
    /// with its pruned rows: biases, BatchNorm scales and shifts, depthwise filters and the weights of the other layers
    /// that write the same channels.
    /// </summary>
    internal IReadOnlyList<string> CoupledWith(string weightName)
    {
        ThrowIfShrunk();
        if (!_byWeight.TryGetValue(weightName, out ChannelGroup? group)) return [];
        var names = new List<string>();
        foreach (string producer in group.Producers)
            foreach (string parameter in ChannelParameters(producer))
                if (producer != group.Producers[0] || parameter != "weight") names.Add($"{producer}.{parameter}");
        foreach (string module in group.ChannelWise)
            names.AddRange(ChannelParameters(module).Select(parameter => $"{module}.{parameter}"));
        return names;
    }

    private IReadOnlyList<string> ChannelParameters(string module) => _spaces.HandlerOf(module).ChannelParameters(_modules[module]);

    /// <summary>
    /// The other weights scored with <paramref name="weightName"/>: their row importances are reduced with its own
    /// into one score per channel (group-reduced importance). Empty when the weight alone decides.
    /// </summary>
    internal IReadOnlyList<string> ScoredWith(string weightName)
    {
        ThrowIfShrunk();
        return _byWeight.TryGetValue(weightName, out ChannelGroup? group) ? group.Producers.Skip(1).Select(p => $"{p}.weight").ToArray() : [];
    }

    /// <summary>
    /// λ·Σ|γ| over the BatchNorm scales on prunable channels (those acting on a group's channels,
    /// <see cref="ChannelGroup.ChannelWise"/>): the sparsity penalty of network slimming (Liu et al. 2017). Add it to
    /// the loss so that unimportant channels' scales shrink toward zero before they are pruned.
    /// </summary>
    /// <param name="strength">λ (≥ 0); the paper uses 1e-4 to 1e-5.</param>
    /// <returns>A scalar tensor on the BatchNorm scales' device, in the caller's dispose scope (zero when there is no BatchNorm).</returns>
    public Tensor BatchNormL1Penalty(double strength)
    {
        ThrowIfShrunk();
        return L1Penalty(_model, Groups.SelectMany(g => g.ChannelWise).Where(m => _modules[m] is BatchNorm { affine: true }).Select(m => $"{m}.weight"), strength);
    }

    /// <summary><see cref="ScoredWith(string)"/> with each weight looked up in <paramref name="model"/>.</summary>
    internal IReadOnlyList<(string Name, Tensor Weight)> ScoredWith(string weightName, nn.Module model) =>
        ScoredWith(weightName).Select(m => (m, (Tensor)model.get_parameter(m)!)).ToList();

    /// <summary>λ·Σ|γ| over <paramref name="scales"/>.</summary>
    private static Tensor L1Penalty(nn.Module model, IEnumerable<string> scales, double strength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(strength);
        using var scope = torch.NewDisposeScope();
        Tensor? total = null;
        foreach (string name in scales)
        {
            Tensor term = model.get_parameter(name)!.abs().sum();
            total = total is null ? term : total.add(term, Scalars.One);
        }
        if (total is null)
        {
            var any = model.parameters().First();
            return torch.zeros([], any.dtype, any.device).MoveToOuterDisposeScope();
        }
        using var lambda = strength.ToScalar();
        return total.mul(lambda).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// |γ| of the BatchNorm right after the layer of <paramref name="weightName"/>; for a group's other layers without
    /// one, zeros (they add nothing to the group's score).
    /// </summary>
    internal Tensor BatchNormScale(string weightName)
    {
        ThrowIfShrunk();
        string producer = weightName.EndsWith(".weight", StringComparison.Ordinal) ? weightName[..^".weight".Length] : weightName;
        if (_spaces.BatchNormAfter(producer) is string bn && _modules[bn] is BatchNorm { affine: true })
            return _model.get_parameter($"{bn}.weight")!.detach().abs();
        ChannelGroup? group = Groups.FirstOrDefault(g => g.Producers.Contains(producer))
            ?? throw new InvalidOperationException($"'{weightName}' does not write the channels of any group of this graph; groups: {string.Join(", ", Weights)}.");
        if (group.Producers[0] == producer)
            throw new InvalidOperationException($"'{producer}' is not followed by a BatchNorm with a scale, so it has no scales to rank its channels by.");
        return torch.zeros(group.Channels);
    }

    /// <summary>
    /// Multiply-accumulates of one sample through the traced layers (Conv2d and Linear) when every group loses the
    /// channels a layer-wise <see cref="PruningGranularity.OutputChannels"/> selection at <paramref name="sparsity"/>
    /// removes (round(s·channels), one always kept). <c>Macs(0)</c> is the model as it is: trace a shrunk model again
    /// to count its MACs.
    /// </summary>
    public long Macs(double sparsity = 0)
    {
        ThrowIfShrunk();
        return _spaces.Macs(KeptAt(sparsity), _modules);
    }

    /// <summary>
    /// The weights of the traced Conv2d and Linear layers (no biases or BatchNorms) when every group loses what a
    /// layer-wise <see cref="PruningGranularity.OutputChannels"/> selection at <paramref name="sparsity"/> removes: the
    /// size of the model <see cref="ShrinkInPlace"/> would leave.
    /// </summary>
    public long WeightCount(double sparsity = 0)
    {
        ThrowIfShrunk();
        return _spaces.Macs(KeptAt(sparsity), _modules, weightsOnly: true);
    }

    /// <summary>Channels each space keeps when every group loses what a layer-wise OutputChannels selection at <paramref name="sparsity"/> removes.</summary>
    private static Func<ChannelSpaces.Space, long> KeptAt(double sparsity)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sparsity);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(sparsity, 1);
        var granularity = PruningGranularity.OutputChannels();
        return space => space.Frozen is null ? space.Channels - MaskSelector.TargetCount(granularity, sparsity, space.Channels) : space.Channels;
    }

    /// <summary>
    /// Multiply-accumulates of one sample through the traced layers when the groups named in <paramref name="kept"/>
    /// (by <see cref="ChannelGroup.Weight"/>) keep that many channels and the rest keep all: what the model costs after
    /// per-group ratios (AMC's, NetAdapt's) are pruned and shrunk.
    /// </summary>
    /// <exception cref="ArgumentException">A name is not a group's weight, or a count is not between 1 and the group's channels.</exception>
    public long Macs(IReadOnlyDictionary<string, long> kept)
    {
        ThrowIfShrunk();
        ArgumentNullException.ThrowIfNull(kept);
        foreach (var (weight, count) in kept)
        {
            if (!_byWeight.TryGetValue(weight, out ChannelGroup? group))
                throw new ArgumentException($"'{weight}' is not the weight of a group; groups: {string.Join(", ", Weights)}.", nameof(kept));
            if (count < 1 || count > group.Channels)
                throw new ArgumentException($"'{weight}' is to keep {count} of its {group.Channels} channels; keep between 1 and {group.Channels}.", nameof(kept));
        }
        return _spaces.Macs(KeptBy(kept), _modules);
    }

    /// <summary>Channels each space keeps: those named in <paramref name="kept"/> by their group's weight, the rest all.</summary>
    private static Func<ChannelSpaces.Space, long> KeptBy(IReadOnlyDictionary<string, long> kept) =>
        space => space.Frozen is null && space.Producers.Count > 0 && kept.TryGetValue($"{space.Producers[0]}.weight", out long k) ? k : space.Channels; // a group's weight is its first producer's

    /// <summary>A Conv2d or Linear of the model as a cost table prices it: one sample's input shape, inputs per channel (H·W behind a flatten), channel counts.</summary>
    internal sealed record PricedLayer(string Name, nn.Module Module, long[] SampleInput, long PerChannel, long InChannels, long OutChannels);

    /// <summary>Every Conv2d and Linear the trace ran, in order, at its channel counts when the groups in <paramref name="kept"/> (by weight) keep that many (the rest all).</summary>
    internal IReadOnlyList<PricedLayer> PricedLayers(IReadOnlyDictionary<string, long>? kept = null)
    {
        ThrowIfShrunk();
        Func<ChannelSpaces.Space, long> keep = KeptBy(kept ?? new Dictionary<string, long>());
        var layers = new List<PricedLayer>();
        foreach (var (name, inShape, _, reads, perChannel, writes) in _spaces.Layers(_modules))
        {
            nn.Module module = _modules[name];
            long declared = module is Conv2d conv ? conv.in_channels : ((Linear)module).in_features;
            long inChannels = reads.Length == 0 ? declared : reads.Sum(r => keep(_spaces.SpaceOf(r)));
            long outChannels = writes is int w ? keep(_spaces.SpaceOf(w)) : inChannels;   // a depthwise convolution's channels are its input's
            layers.Add(new PricedLayer(name, module, inShape.Skip(1).ToArray(), reads.Length == 0 ? 1 : perChannel, inChannels, outChannels));
        }
        return layers;
    }

    /// <summary>
    /// The one Conv2d or Linear that reads <paramref name="group"/>'s channels and nothing else, with its inputs per
    /// channel; null when the group has several readers (a residual stage) or its reader reads other channels too.
    /// </summary>
    internal (string Consumer, long PerChannel)? SoleConsumer(ChannelGroup group)
    {
        int root = _rootOf[group.Weight];
        if (group.Consumers.Count != 1) return null;
        var reader = _spaces.Layers(_modules).FirstOrDefault(l => l.Module == group.Consumers[0]);
        return reader.Module is not null && reader.Reads.Length == 1 && reader.Reads[0] == root && reader.Writes is not null
            ? (reader.Module, reader.PerChannel) : null;
    }

    /// <summary>The model this graph was traced from.</summary>
    internal nn.Module Model => _model;

    /// <summary>The dense MACs of a group's own layers (its producers and depthwise convolutions): its share of the model.</summary>
    internal long Macs(ChannelGroup group) => _spaces.GroupMacs(_rootOf[group.Weight], _modules);

    /// <summary>
    /// Removes every dead channel of every group for real: a channel whose producers' rows and biases and whose
    /// BatchNorm scales and shifts and depthwise filters are all exactly zero (what pruning with this graph leaves)
    /// outputs zero, so it goes with its readers' inputs, and the model's outputs do not change beyond float rounding.
    /// The model's modules keep their identity; their parameters are replaced, so create the optimizer (and any
    /// pruner) again afterwards. The graph is spent: trace the shrunk model again to go on. The shrunk model is run
    /// on the traced inputs and on fresh random ones at the same scales and must give the masked model's outputs on
    /// each; if it does not (a module whose forward keeps a channel count of its own), every module is put back and
    /// <see cref="NotSupportedException"/> says so. Parameters tied between two modules are refused before anything changes.
    /// </summary>
    public void ShrinkInPlace()
    {
        ThrowIfShrunk();
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var alive = new Dictionary<int, long[]>();
        foreach (ChannelGroup group in Groups)
            alive[_rootOf[group.Weight]] = AliveChannels(group);
        var selections = _spaces.Selections(alive).ToList();
        foreach (var (name, _, _) in selections) _spaces.HandlerOf(name).CheckShrinkable(_modules[name]);   // all or nothing
        RefuseTiedParameters(selections.Select(s => s.Module));
        var model = (nn.Module<Tensor, Tensor>)_model;
        bool training = model.training;
        model.eval();
        var restore = selections.Select(s => _spaces.HandlerOf(s.Module).Save(_modules[s.Module])).ToList();
        try
        {
            var inputs = ModuleTrace.VerificationInputs(_example).ToList();
            var expected = inputs.Select(i => model.call(i.Input.clone())).ToList();
            foreach (var (name, rows, columns) in selections)
                _spaces.HandlerOf(name).Shrink(_modules[name], rows, columns);
            // The trace cannot see what a forward does with a module's own channel count: check the outputs, on the
            // example and on fresh inputs at other scales.
            for (int i = 0; i < inputs.Count; i++)
            {
                Tensor actual = model.call(inputs[i].Input.clone());
                double scale = Math.Max(1e-6, expected[i].abs().max().item<float>());
                double difference = actual.shape.SequenceEqual(expected[i].shape) ? actual.sub(expected[i]).abs().max().item<float>() / scale : double.PositiveInfinity;
                if (!(difference <= 1e-4))
                    throw new InvalidOperationException($"on {inputs[i].Description} the shrunk model's outputs differ from the masked model's by {difference:E1} of their range");
            }
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or System.Runtime.InteropServices.ExternalException)
        {
            foreach (Action undo in restore) undo();
            throw new NotSupportedException(
                $"Shrinking in place broke the model ({e.Message.Split('\n')[0]}); it was put back as it was. A module whose forward checks or uses a channel count of its own (TorchVision's SqueezeExcitation keeps input_channels) cannot be shrunk in place; its channels stay masked.", e);
        }
        finally
        {
            model.train(training);
        }
        _shrunk = true;
    }

    /// <summary>
    /// A parameter held by two modules (tied weights) cannot be replaced in one of them alone: TorchSharp disposes the
    /// replaced tensor, which the other still holds. Refused before anything changes.
    /// </summary>
    private void RefuseTiedParameters(IEnumerable<string> shrunk)
    {
        var holders = new Dictionary<IntPtr, List<string>>();
        foreach (var (module, m) in _modules)
            if (!m.children().Any())
                foreach (var (name, parameter) in m.named_parameters())
                {
                    if (!holders.TryGetValue(parameter.Handle, out List<string>? names)) holders[parameter.Handle] = names = [];
                    names.Add(module.Length == 0 ? name : $"{module}.{name}");
                }
        foreach (string module in shrunk)
            foreach (var (name, parameter) in _modules[module].named_parameters())
                if (holders[parameter.Handle] is { Count: > 1 } tied)
                    throw new NotSupportedException(
                        $"'{module}.{name}' is one tensor with {string.Join(", ", tied.Where(t => t != $"{module}.{name}").Select(t => $"'{t}'"))} (tied weights): shrinking one in place would change or free the other. Nothing was changed; untie them or keep these channels masked.");
    }

    private long[] AliveChannels(ChannelGroup group)
    {
        Tensor? dead = null;
        foreach (string name in CoupledWith(group.Weight).Prepend(group.Weight))
        {
            Parameter p = _model.get_parameter(name)!;
            Tensor rowDead = p.detach().reshape(p.shape[0], -1).eq(Scalars.Zero).all(1);
            dead = dead is null ? rowDead : dead.logical_and(rowDead);
        }
        long[] kept = dead!.logical_not().nonzero().flatten().cpu().data<long>().ToArray();
        return kept.Length > 0 ? kept : [0]; // one channel keeps every reader with an input
    }


    private void ThrowIfShrunk()
    {
        if (_shrunk) throw new InvalidOperationException("The model was shrunk with this graph; trace the shrunk model again (ChannelGraph.Trace).");
    }
}
