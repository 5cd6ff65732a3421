using TorchSharp.Modules;
using static TorchSharp.torch;
using Node = Pruning.Structure.ModuleTrace.Node;
using NodeKind = Pruning.Structure.ModuleTrace.NodeKind;

namespace Pruning.Structure;

/// <summary>
/// The channel bookkeeping behind <see cref="ChannelGraph"/>: every tensor of the trace carries a layout (the channel
/// spaces laid along its dimension 1, and the inputs per channel once flattened); a Conv2d or Linear opens a new space,
/// an add unites the spaces of its inputs (union-find), a concatenation lays them side by side. A space that reaches
/// something unsafe is frozen with the reason.
/// </summary>
internal sealed class ChannelSpaces
{
    internal sealed class Space
    {
        public int Parent;
        public long Channels;
        public List<string> Producers = [];
        public List<string> ChannelWise = [];
        public string? Frozen;
    }

    /// <summary>The spaces along dimension 1 (each space's channels in order) and the elements per channel after a flatten.</summary>
    private readonly record struct Layout(int[] Spaces, long PerChannel);

    /// <summary>A depthwise convolution: one filter per channel, as many outputs as inputs.</summary>
    internal static bool IsDepthwise(Conv2d conv) => conv.groups > 1 && conv.groups == conv.in_channels && conv.out_channels == conv.in_channels;

    private readonly List<Space> _spaces = [];
    private readonly Dictionary<string, Layout> _reads = [];      // what each Conv2d/Linear/BatchNorm reads
    private readonly Dictionary<string, int> _writes = [];        // the space each Conv2d/Linear (not depthwise) writes
    private readonly Dictionary<string, (long[] In, long[] Out)> _shapes = [];
    private readonly List<string> _order = [];                   // every module with a shape, in the order the trace ran it
    private readonly Dictionary<string, string> _batchNormAfter = [];  // producer → the BatchNorm that reads its output
    private readonly Dictionary<string, ModuleHandler> _handlers = []; // every module with a handler, by name

    public static ChannelSpaces Analyze(ModuleTrace trace, IReadOnlyDictionary<string, nn.Module> modules)
    {
        var spaces = new ChannelSpaces();
        var layouts = new Layout[trace.Nodes.Count];
        // A gate (sigmoid) maps 0 to ½, so it keeps a channel only where all it feeds is a scaling's factor.
        var readers = trace.Nodes.SelectMany(n => n.Inputs.Select((input, position) => (input, n, position))).ToLookup(r => r.input);
        bool OnlyScales(int id) => readers[id].All(r => r.n.Kind == NodeKind.Scale && r.position == 1) && readers[id].Any();
        var calls = new HashSet<string>();
        foreach (Node node in trace.Nodes)
        {
            Layout input = node.Inputs.Length > 0 ? layouts[node.Inputs[0]] : default;
            if (node.Kind == NodeKind.Module && modules[node.Module!] is BatchNorm && trace.Nodes[node.Inputs[0]] is { Kind: NodeKind.Module, Module: string before })
                spaces._batchNormAfter.TryAdd(before, node.Module!);
            layouts[node.Id] = node.Kind switch
            {
                NodeKind.Input => spaces.Frozen(node.Shape[1], "the model's input"),
                NodeKind.Module => spaces.Module(node, trace.Nodes[node.Inputs[0]].Shape, input, modules[node.Module!], calls, OnlyScales(node.Id)),
                NodeKind.Scale => spaces.Scale(layouts[node.Inputs[0]], layouts[node.Inputs[1]]),
                NodeKind.Add => spaces.Add(layouts[node.Inputs[0]], layouts[node.Inputs[1]]),
                NodeKind.Concat => spaces.Concat(node.Inputs.Select(i => layouts[i]).ToArray(), node.Shape),
                NodeKind.Relu or NodeKind.GlobalAveragePool or NodeKind.Pool => input,
                NodeKind.Flatten => spaces.Flatten(input, trace.Nodes[node.Inputs[0]].Shape, node.Shape, "a flatten"),
                _ => throw new InvalidOperationException($"Unknown trace node {node.Kind}."),
            };
        }
        spaces.Freeze(layouts[trace.Output], "the model's output");
        return spaces;
    }

    private Layout Module(Node node, long[] inShape, Layout input, nn.Module module, HashSet<string> calls, bool gate)
    {
        string name = node.Module!;
        bool parameters = module.parameters().Any();
        if (parameters && !calls.Add(name))
            throw new NotSupportedException($"'{name}' runs more than once in one forward pass (shared weights); its channels cannot be tracked.");
        if (_shapes.TryAdd(name, (inShape, node.Shape))) _order.Add(name);
        if (module is TorchSharp.Modules.Flatten) return Flatten(input, inShape, node.Shape, $"'{name}'");
        if (module is Sigmoid or Hardsigmoid && gate && inShape.SequenceEqual(node.Shape))
            return input;   // a squeeze-and-excitation gate: its channels only scale the group's own
        if (ModuleHandlers.For(module) is not { } handler)
        {
            if (parameters)
                throw new NotSupportedException($"'{name}' is a {module.GetType().Name} with parameters, which the channel analysis does not know: register a ModuleHandler for it (ModuleHandlers.Register), or keep it out of the traced model.");
            Freeze(input, $"'{name}' is a {module.GetType().Name}, which may mix channels or not map 0 to 0");
            return Frozen(node.Shape.Length > 1 ? node.Shape[1] : 1, $"'{name}' is a {module.GetType().Name}");
        }
        _handlers[name] = handler;
        ChannelUse use = handler.Channels(module, inShape, node.Shape);
        switch (use.Role)
        {
            case ChannelRole.Produces:
                _reads[name] = input;
                if (input.PerChannel != 1 && inShape.Length > 2) Freeze(input, $"'{name}' reads a flattened tensor");
                return Produce(name, node.Shape[1]);
            case ChannelRole.ChannelWise:
                _reads[name] = input;
                if (input.PerChannel != 1) Freeze(input, $"'{name}' is {use.What} over a flattened tensor ({input.PerChannel} features a channel)");
                else if (input.Spaces.Length != 1) Freeze(input, $"'{name}' is {use.What} over a concatenation");
                else Root(input.Spaces[0]).ChannelWise.Add(name);
                return input;
            case ChannelRole.PassThrough when !parameters:
                return input;
            default:
                string reason = use.Role == ChannelRole.Opaque ? $"'{name}' is {use.What}" : $"'{name}' passes channels through but holds parameters";
                Freeze(input, reason);
                var frozen = Frozen(node.Shape.Length > 1 ? node.Shape[1] : 1, reason);
                return parameters ? Written(name, frozen) : frozen;
        }
    }

    private Layout Produce(string name, long channels)
    {
        int id = NewSpace(channels);
        _spaces[id].Producers.Add(name);
        _writes[name] = id;
        return new Layout([id], 1);
    }

    /// <summary>Records <paramref name="name"/> as the writer of a space it opened, so <see cref="Kept"/> reports it.</summary>
    private Layout Written(string name, Layout layout)
    {
        _writes[name] = layout.Spaces[0];
        return layout;
    }

    private Layout Add(Layout a, Layout b)
    {
        bool aligned = a.PerChannel == b.PerChannel && a.Spaces.Length == b.Spaces.Length
            && a.Spaces.Zip(b.Spaces).All(p => Root(p.First).Channels == Root(p.Second).Channels);
        if (!aligned)
        {
            Freeze(a, "an add of tensors whose channel groups do not line up");
            Freeze(b, "an add of tensors whose channel groups do not line up");
            return a;
        }
        for (int i = 0; i < a.Spaces.Length; i++) Union(a.Spaces[i], b.Spaces[i]);
        return a;
    }

    /// <summary>x scaled per channel by s: s's channels are x's (the excitation's last layer joins x's group).</summary>
    private Layout Scale(Layout x, Layout s)
    {
        if (x.Spaces.Length == 1 && s.Spaces.Length == 1 && x.PerChannel == 1 && s.PerChannel == 1 && Root(x.Spaces[0]).Channels == Root(s.Spaces[0]).Channels)
            Union(x.Spaces[0], s.Spaces[0]);
        else
        {
            Freeze(x, "a per-channel scaling whose factors do not line up with the channels");
            Freeze(s, "a per-channel scaling whose factors do not line up with the channels");
        }
        return x;
    }

    private Layout Concat(Layout[] parts, long[] shape)
    {
        if (parts.All(p => p.PerChannel == 1)) return new Layout(parts.SelectMany(p => p.Spaces).ToArray(), 1);
        foreach (Layout part in parts) Freeze(part, "a concatenation of flattened tensors");
        return Frozen(shape[1], "a concatenation of flattened tensors");
    }

    /// <summary>[N, C, H, W] → [N, C·H·W] keeps the channels, each now H·W inputs wide; other reshapes freeze them.</summary>
    private Layout Flatten(Layout input, long[] inShape, long[] outShape, string what)
    {
        if (inShape.Length == 2 && outShape.SequenceEqual(inShape)) return input;
        long rest = inShape.Skip(2).Aggregate(1L, (x, y) => x * y);
        if (outShape.Length == 2 && inShape.Length > 2 && outShape[1] == inShape[1] * rest)
            return input with { PerChannel = input.PerChannel * rest };
        Freeze(input, $"{what} that does not flatten [N, C, …] to [N, C·…]");
        return Frozen(outShape.Length > 1 ? outShape[1] : 1, $"{what}");
    }

    private int NewSpace(long channels)
    {
        _spaces.Add(new Space { Parent = _spaces.Count, Channels = channels });
        return _spaces.Count - 1;
    }

    private Layout Frozen(long channels, string reason)
    {
        int id = NewSpace(channels);
        _spaces[id].Frozen = reason;
        return new Layout([id], 1);
    }

    private void Freeze(Layout layout, string reason)
    {
        foreach (int s in layout.Spaces) Root(s).Frozen ??= reason;
    }

    private int Find(int s)
    {
        while (_spaces[s].Parent != s) s = _spaces[s].Parent = _spaces[_spaces[s].Parent].Parent;
        return s;
    }

    private Space Root(int s) => _spaces[Find(s)];

    private void Union(int a, int b)
    {
        int ra = Find(a), rb = Find(b);
        if (ra == rb) return;
        (ra, rb) = (Math.Min(ra, rb), Math.Max(ra, rb)); // the earlier space leads: its producer ran first
        Space keep = _spaces[ra], gone = _spaces[rb];
        gone.Parent = ra;
        keep.Producers.AddRange(gone.Producers);
        keep.ChannelWise.AddRange(gone.ChannelWise);
        keep.Frozen ??= gone.Frozen;
    }

    /// <summary>Every group root that can be pruned (not frozen, written by at least one layer), with its group.</summary>
    public IEnumerable<(int Root, ChannelGroup Group)> GroupRoots()
    {
        for (int s = 0; s < _spaces.Count; s++)
        {
            Space space = _spaces[s];
            if (Find(s) != s || space.Frozen is not null || space.Producers.Count == 0) continue;
            var consumers = _reads.Where(r => r.Value.Spaces.Any(x => Find(x) == s) && !space.ChannelWise.Contains(r.Key)).Select(r => r.Key).ToArray();
            yield return (s, new ChannelGroup(space.Channels, space.Producers.ToArray(), space.ChannelWise.ToArray(), consumers));
        }
    }

    /// <summary>
    /// Every Conv2d and Linear the trace ran, in order: its input and output shapes (the trace's batch first), the
    /// group roots it reads along dimension 1 with the inputs per channel, and the root it writes (null for a depthwise
    /// convolution, whose channels are its input's).
    /// </summary>
    public IEnumerable<(string Module, long[] In, long[] Out, int[] Reads, long PerChannel, int? Writes)> Layers(IReadOnlyDictionary<string, nn.Module> modules)
    {
        foreach (string name in _order)
        {
            if (modules[name] is not (Conv2d or Linear)) continue;
            var (inShape, outShape) = _shapes[name];
            Layout read = _reads.GetValueOrDefault(name, new Layout([], 1));
            yield return (name, inShape, outShape, read.Spaces.Select(Find).ToArray(), read.PerChannel, _writes.TryGetValue(name, out int w) ? Find(w) : null);
        }
    }

    /// <summary>The channels of the group rooted at <paramref name="root"/>.</summary>
    public Space SpaceOf(int root) => Root(root);

    /// <summary>The BatchNorm that reads <paramref name="producer"/>'s output directly, or null.</summary>
    public string? BatchNormAfter(string producer) => _batchNormAfter.GetValueOrDefault(producer);

    public IReadOnlyDictionary<string, string> Kept() =>
        _writes.Where(w => Root(w.Value).Frozen is not null).ToDictionary(w => w.Key, w => Root(w.Value).Frozen!);

    /// <summary>
    /// For every Conv2d, Linear and BatchNorm the trace ran: the output rows to keep (null = all) and the input columns
    /// to keep (null = all), from the alive channels of each group root.
    /// </summary>
    public IEnumerable<(string Module, long[]? Rows, long[]? Columns)> Selections(IReadOnlyDictionary<int, long[]> alive)
    {
        foreach (string module in _reads.Keys.Union(_writes.Keys))
        {
            long[]? rows = null, columns = null;
            if (_writes.TryGetValue(module, out int written)) rows = alive.GetValueOrDefault(Find(written));
            if (_reads.TryGetValue(module, out Layout read))
            {
                if (!_writes.ContainsKey(module)) rows = read.Spaces.Length == 1 ? alive.GetValueOrDefault(Find(read.Spaces[0])) : null; // BatchNorm, depthwise
                else columns = Columns(read, alive);
            }
            if (rows is not null || columns is not null) yield return (module, rows, columns);
        }
    }

    /// <summary>The input columns a reader keeps: per space in its layout, the alive channels (all when frozen), each PerChannel wide.</summary>
    private long[]? Columns(Layout read, IReadOnlyDictionary<int, long[]> alive)
    {
        if (read.Spaces.All(s => !alive.ContainsKey(Find(s)))) return null;
        var columns = new List<long>();
        long offset = 0;
        foreach (int s in read.Spaces)
        {
            long channels = Root(s).Channels;
            IEnumerable<long> kept = alive.TryGetValue(Find(s), out long[]? a) ? a : Enumerable.Range(0, (int)channels).Select(c => (long)c);
            foreach (long c in kept)
                for (long k = 0; k < read.PerChannel; k++) columns.Add((offset + c) * read.PerChannel + k);
            offset += channels;
        }
        return columns.ToArray();
    }

    /// <summary>
    /// MACs of one sample through the traced Conv2d and Linear layers when each space keeps <paramref name="kept"/>
    /// channels; with <paramref name="weightsOnly"/>, the weights those layers keep instead (MACs per output position).
    /// </summary>
    public long Macs(Func<Space, long> kept, IReadOnlyDictionary<string, nn.Module> modules, bool weightsOnly = false) =>
        _shapes.Keys.Sum(name => ModuleMacs(name, kept, modules, weightsOnly));

    /// <summary>The dense MACs of the layers that write a group's channels or act on them (its producers and depthwise convolutions).</summary>
    public long GroupMacs(int root, IReadOnlyDictionary<string, nn.Module> modules)
    {
        Space space = _spaces[Find(root)];
        return space.Producers.Concat(space.ChannelWise).Sum(name => ModuleMacs(name, s => s.Channels, modules, weightsOnly: false));
    }

    private long ModuleMacs(string name, Func<Space, long> kept, IReadOnlyDictionary<string, nn.Module> modules, bool weightsOnly)
    {
        if (!_handlers.TryGetValue(name, out ModuleHandler? handler)) return 0;
        var (_, outShape) = _shapes[name];
        long? inputs = _reads.TryGetValue(name, out Layout read) ? read.Spaces.Sum(s => kept(Root(s))) * read.PerChannel : null;
        long? outputs = _writes.TryGetValue(name, out int written) ? kept(Root(written)) : null;
        return handler.Macs(modules[name], outShape, inputs, outputs, weightsOnly);
    }

    /// <summary>The handler of a module the trace ran (every Conv2d, Linear and BatchNorm has one).</summary>
    public ModuleHandler HandlerOf(string module) => _handlers[module];
}
