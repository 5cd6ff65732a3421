using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Structure;

/// <summary>
/// The dataflow of one forward pass, recorded with hooks on the leaf modules: which module read which tensor. The
/// operations between module calls that hooks cannot see (a residual add, a concatenation, a functional ReLU, flatten
/// or pooling, a squeeze-and-excitation scaling) are recognized from the tensors themselves: a module's input that is not an earlier module's output must
/// equal, bit for bit, one of those operations applied to earlier tensors, or the trace is refused.
/// </summary>
internal sealed class ModuleTrace
{
    internal enum NodeKind
    {
        Input,
        Module,
        Add,
        Concat,
        Relu,
        Flatten,
        GlobalAveragePool,
        Pool,
        Scale,
    }

    /// <summary>A functional max or average pooling the trace recognized: square window, stride, padding, rounding.</summary>
    internal readonly record struct PoolSpec(bool Max, int Kernel, int Stride, int Padding, bool CeilMode, bool CountIncludePad);

    /// <summary>One tensor of the pass: what made it (Module holds the module's dotted name), from which earlier nodes, and its shape.</summary>
    internal sealed record Node(int Id, NodeKind Kind, long[] Shape, int[] Inputs, string? Module)
    {
        /// <summary>For <see cref="NodeKind.Pool"/>, which pooling.</summary>
        public PoolSpec Pool { get; init; }
    }

    private ModuleTrace(List<Node> nodes, int output, IReadOnlySet<int> zero)
    {
        Nodes = nodes;
        Output = output;
        Zero = zero;
    }

    public IReadOnlyList<Node> Nodes { get; }

    /// <summary>The node the model returns.</summary>
    public int Output { get; }

    /// <summary>The modules' outputs that are exactly zero on the traced input: an add of one of them is invisible.</summary>
    private IReadOnlySet<int> Zero { get; }

    /// <summary>
    /// A seeded random batch of two samples of <paramref name="sample"/>'s shape, for tracing a model that only its input
    /// shape is known of (random values keep distinct tensors from comparing equal by chance). The caller disposes it.
    /// </summary>
    public static Tensor Example(long[] sample)
    {
        using var generator = new torch.Generator(20261201);
        return torch.randn([2, .. sample], generator: generator);
    }

    /// <summary>
    /// Traces <paramref name="model"/> (in eval mode, without gradients; the mode is restored) on one batch made of three
    /// inputs derived from <paramref name="example"/>: the example, the example × 10 and the example with every other sign
    /// flipped (<see cref="Probes"/>), and explains every tensor a leaf module reads. Each explanation must hold on all
    /// three at once, so an operation that is an identity on small inputs only (relu6, a clamp) is refused instead of
    /// dropped. The forward pass gets a copy of the batch, so a forward that edits its input in place is traced from the
    /// input as it was. Node shapes have the batch of the three together.
    /// </summary>
    /// <exception cref="NotSupportedException">A tensor cannot be explained, a module's output is never read or is
    /// exactly zero on every traced input; the message names the module.</exception>
    public static ModuleTrace Run(nn.Module model, Tensor example)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(example);
        if (model is not nn.Module<Tensor, Tensor>)
            throw new NotSupportedException($"The model is a {model.GetType().Name}, which does not take one tensor and return one; only such models can be traced.");
        var probes = Probes(example).Select(p => p.Input).ToList();
        try
        {
            using Tensor batch = torch.cat(probes, 0);
            ModuleTrace trace = RunOnce(model, batch);
            foreach (int id in trace.Zero)
                throw new NotSupportedException(
                    $"The output of '{trace.Nodes[id].Module}' is exactly zero on every traced input (a layer or BatchNorm initialised to zero?): the trace cannot tell which tensors it is added to or concatenated with. Trace the model with weights that are not all zero.");
            return trace;
        }
        finally
        {
            foreach (Tensor probe in probes) probe.Dispose();
        }
    }

    /// <summary>The example, the example × 10 and the example with every other element's sign flipped, with descriptions.</summary>
    internal static IEnumerable<(Tensor Input, string Description)> Probes(Tensor example)
    {
        Tensor pristine = example.detach();
        yield return (pristine.clone(), "the example");
        using (var ten = 10.ToScalar())
            yield return (pristine.mul(ten), "the example × 10");
        using var two = 2.ToScalar();
        using var one = 1.ToScalar();
        using var parity = torch.arange(pristine.numel(), device: pristine.device).remainder(two).mul(two).sub(one).neg().reshape(pristine.shape).to(pristine.dtype);
        yield return (pristine.mul(parity), "the example with every other sign flipped");
    }

    /// <summary>
    /// What a traced transformation (an exported chain, a shrunk model) is checked on: <see cref="Probes"/> of the example
    /// and of a fresh seeded random input of its shape, so that a check never rests on the inputs the trace was made on alone.
    /// </summary>
    internal static IEnumerable<(Tensor Input, string Description)> VerificationInputs(Tensor example)
    {
        foreach (var probe in Probes(example)) yield return probe;
        using var generator = new torch.Generator(20261204);
        using Tensor fresh = torch.randn(example.shape, dtype: example.dtype, device: example.device, generator: generator);
        foreach (var (input, description) in Probes(fresh))
            yield return (input, description.Replace("the example", "a fresh random input", StringComparison.Ordinal));
    }

    /// <summary>One forward pass on a copy of <paramref name="input"/>, explained.</summary>
    private static ModuleTrace RunOnce(nn.Module model, Tensor input)
    {
        var calls = new List<(string? Name, Tensor Input, Tensor Output)>();
        var handles = new List<Action>();
        var pending = new Dictionary<string, Tensor>();
        var running = new List<string>();   // modules whose forward started and has not returned, innermost last
        bool training = model.training;
        using Tensor copy = input.clone();
        try
        {
            // TorchSharp's named_modules leaves out the model itself, which is the only leaf when it is one layer.
            var leaves = model.children().Any() ? model.named_modules().Where(m => !m.module.children().Any()) : [("", model)];
            foreach (var (name, module) in leaves)
            {
                if (module is not nn.Module<Tensor, Tensor> leaf) continue; // never called with one tensor: its result shows up unexplained
                // Snapshots leave the model's own dispose scopes: ResNet's forward disposes its temporaries on return.
                var pre = leaf.register_forward_pre_hook((_, x) =>
                {
                    pending[name] = x.detach().clone().DetachFromDisposeScope();
                    running.Add(name);
                    return x;
                });
                handles.Add(pre.remove);
                var post = leaf.register_forward_hook((_, _, output) =>
                {
                    calls.Add((name, pending[name], output.detach().clone().DetachFromDisposeScope()));
                    pending.Remove(name);
                    running.Remove(name);
                    return output;
                });
                handles.Add(post.remove);
            }
            model.eval();
            Tensor result;
            try
            {
                using (torch.no_grad())
                using (var scope = torch.NewDisposeScope())
                    result = ((nn.Module<Tensor, Tensor>)model).call(copy).detach().clone().DetachFromDisposeScope();
            }
            catch (System.Runtime.InteropServices.ExternalException e)
            {
                string where = running.Count > 0
                    ? $"'{running[^1]}' ({model.named_modules().FirstOrDefault(m => m.name == running[^1]).module?.GetType().Name ?? "module"}) failed"
                    : "The model's forward failed";
                throw new NotSupportedException(
                    $"{where} on the traced input of shape [{string.Join(", ", input.shape)}] (the example, ×10 and sign-flipped as one batch): {e.Message.Split('\n')[0]}", e);
            }
            calls.Add((null, result, result));   // the model's output
            try
            {
                return Explain(input, calls);
            }
            catch (NotSupportedException e) when (!Equal(copy, input))
            {
                throw new NotSupportedException($"{e.Message} The model's forward also edits its input in place (x.sub_(…), x.relu_()), which the trace sees only where a module reads the result.", e);
            }
        }
        finally
        {
            foreach (Action remove in handles) remove();
            model.train(training);
            foreach (var (_, x, output) in calls)
            {
                x.Dispose();
                if (!ReferenceEquals(x, output)) output.Dispose();
            }
            foreach (Tensor t in pending.Values) t.Dispose();
        }
    }

    private static ModuleTrace Explain(Tensor example, List<(string? Name, Tensor Input, Tensor Output)> calls)
    {
        using var scope = torch.NewDisposeScope();
        var nodes = new List<Node>();
        var values = new List<Tensor>();
        var read = new HashSet<int>();
        int Add(NodeKind kind, Tensor value, string? module, params int[] inputs)
        {
            nodes.Add(new Node(nodes.Count, kind, value.shape, inputs, module));
            values.Add(value);
            read.UnionWith(inputs);
            return nodes.Count - 1;
        }

        Add(NodeKind.Input, example.detach(), null);
        int output = -1;
        foreach (var (name, input, result) in calls)
        {
            string reader = name is null ? "the model's output" : $"the input of '{(name.Length == 0 ? "the model" : name)}'";
            int source = Find(input, reader);
            if (name is null) output = source;
            else Add(NodeKind.Module, result, name, source);
        }
        read.Add(output);
        foreach (Node node in nodes)
            if (node.Kind == NodeKind.Module && !read.Contains(node.Id))
                throw new NotSupportedException(
                    $"The output of '{node.Module}' is read by nothing the trace can follow: an operation between modules that it cannot recognize (only add, concatenation along channels, ReLU and flatten are), a residual branch that is exactly zero on the example, or an unused module. Declare the block with Residual, or trace with weights that are not all zero.");
        var zero = nodes.Where(n => n.Kind == NodeKind.Module && n.Id != output && IsZero(values[n.Id])).Select(n => n.Id).ToHashSet();
        return new ModuleTrace(nodes, output, zero);

        // The most recent tensor it equals, else the first of: ReLU(v), flatten(v), mean over H and W, a pooling, x·s per channel, a + b, ReLU(a + b), cat(parts).
        int Find(Tensor t, string reader) => TryFind(t) ?? throw new NotSupportedException(
            $"{reader} is not the model's input, the output of a module, or a sum of two (add, then optionally ReLU), a concatenation along channels, a ReLU, a flatten, a pooling or a per-channel scaling of those: an operation the trace cannot see computed it. Make that operation a module, or declare the block with Residual. (The trace runs the example, the example × 10 and the example with every other sign flipped, so an operation that is an identity on small inputs only, such as relu6 or a clamp, shows here too.)");

        int? TryFind(Tensor t)
        {
            for (int i = values.Count - 1; i >= 0; i--)
                if (Same(values[i], t)) return i;
            for (int i = values.Count - 1; i >= 0; i--)
                if (SameShape(values[i], t) && Equal(values[i].relu(), t)) return Add(NodeKind.Relu, t, null, i);
            if (t.dim() == 2)
                for (int i = values.Count - 1; i >= 0; i--)
                    if (values[i].dim() > 2 && values[i].numel() == t.numel() && values[i].shape[0] == t.shape[0] && Equal(values[i].flatten(1), t))
                        return Add(NodeKind.Flatten, t, null, i);
            if (GlobalAveragePool(t) is int pooled) return pooled;
            if (Pooling(t) is int windowed) return windowed;
            if (Scale(t) is int scaled) return scaled;
            for (int a = values.Count - 1; a >= 0; a--)
            {
                if (!SameShape(values[a], t)) continue;
                for (int b = a - 1; b >= 0; b--)
                {
                    if (!SameShape(values[b], t)) continue;
                    Tensor sum = values[a].add(values[b]);
                    if (Equal(sum, t)) return Add(NodeKind.Add, t, null, b, a);
                    if (Equal(sum.relu(), t)) return Add(NodeKind.Relu, t, null, Add(NodeKind.Add, sum, null, b, a));
                }
            }
            if (t.dim() >= 2 && Concatenation(t) is { Count: > 1 } parts) return Add(NodeKind.Concat, t, null, [.. parts]);
            return null;
        }

        // The mean over height and width of an earlier [N, C, H, W] tensor, as adaptive_avg_pool2d(v, 1) or v.mean([2, 3])
        // computes it: [N, C, 1, 1], or flattened to [N, C].
        int? GlobalAveragePool(Tensor t)
        {
            bool kept = t.dim() == 4 && t.shape[2] == 1 && t.shape[3] == 1;
            if (!kept && t.dim() != 2) return null;
            for (int i = values.Count - 1; i >= 0; i--)
            {
                Tensor v = values[i];
                if (v.dim() != 4 || v.shape[0] != t.shape[0] || v.shape[1] != t.shape[1] || v.shape[2] * v.shape[3] == 1) continue;
                foreach (Tensor pooled in new[] { nn.functional.adaptive_avg_pool2d(v, [1, 1]), v.mean([2, 3], keepdim: true) })
                {
                    if (kept && Equal(pooled, t)) return Add(NodeKind.GlobalAveragePool, t, null, i);
                    if (!kept && Equal(pooled.flatten(1), t)) return Add(NodeKind.Flatten, t, null, Add(NodeKind.GlobalAveragePool, pooled, null, i));
                }
            }
            return null;
        }

        // A functional max or average pooling of an earlier [N, C, H, W] tensor with a common square window (2 or 3,
        // stride 1 or 2, padding up to 1, floor or ceil rounding), as Inception's forward calls them.
        int? Pooling(Tensor t)
        {
            if (t.dim() != 4) return null;
            for (int i = values.Count - 1; i >= 0; i--)
            {
                Tensor v = values[i];
                if (v.dim() != 4 || v.shape[0] != t.shape[0] || v.shape[1] != t.shape[1]) continue;
                foreach (PoolSpec spec in PoolSpecs())
                {
                    if (PooledExtent(v.shape[2], spec) != t.shape[2] || PooledExtent(v.shape[3], spec) != t.shape[3]) continue;
                    Tensor pooled = spec.Max
                        ? nn.functional.max_pool2d(v, spec.Kernel, spec.Stride, spec.Padding, ceil_mode: spec.CeilMode)
                        : nn.functional.avg_pool2d(v, spec.Kernel, spec.Stride, spec.Padding, ceil_mode: spec.CeilMode, count_include_pad: spec.CountIncludePad);
                    if (Equal(pooled, t))
                    {
                        int id = Add(NodeKind.Pool, t, null, i);
                        nodes[id] = nodes[id] with { Pool = spec };
                        return id;
                    }
                }
            }
            return null;
        }

        // x · s, an earlier [N, C, H, W] tensor scaled per channel by an earlier [N, C, 1, 1] or [N, C] one: squeeze-and-
        // excitation. Inputs are (x, s).
        int? Scale(Tensor t)
        {
            if (t.dim() != 4) return null;
            for (int i = values.Count - 1; i >= 0; i--)
            {
                if (!SameShape(values[i], t)) continue;
                for (int j = values.Count - 1; j >= 0; j--)
                {
                    Tensor s = values[j];
                    bool perChannel = s.dim() >= 2 && s.shape[0] == t.shape[0] && s.shape[1] == t.shape[1] && (s.dim() == 2 || s.dim() == 4 && s.shape[2] == 1 && s.shape[3] == 1);
                    if (perChannel && Equal(values[i].mul(s.reshape(t.shape[0], t.shape[1], 1, 1)), t)) return Add(NodeKind.Scale, t, null, i, j);
                }
            }
            return null;
        }

        // Earlier tensors that, laid side by side along dimension 1, give t (the most recent match at each offset).
        List<int>? Concatenation(Tensor t)
        {
            var parts = new List<int>();
            long offset = 0, total = t.shape[1];
            while (offset < total)
            {
                int found = -1;
                for (int i = values.Count - 1; i >= 0 && found < 0; i--)
                {
                    Tensor v = values[i];
                    if (v.dim() != t.dim() || v.shape[1] > total - offset || v.shape[0] != t.shape[0]) continue;
                    if (!v.shape.Skip(2).SequenceEqual(t.shape.Skip(2))) continue;
                    if (Equal(v, t.narrow(1, offset, v.shape[1]))) found = i;
                }
                // The last part may itself be unobserved (Inception's pooled branch, pooled in forward): explain the rest.
                if (found < 0 && offset > 0 && TryFind(t.narrow(1, offset, total - offset)) is int rest) found = rest;
                if (found < 0) return null;
                parts.Add(found);
                offset += values[found].shape[1];
            }
            return parts;
        }
    }

    private static IEnumerable<PoolSpec> PoolSpecs()
    {
        foreach (bool max in new[] { true, false })
            foreach (int kernel in new[] { 3, 2 })
                foreach (int stride in new[] { 1, 2 })
                    foreach (int padding in new[] { 0, 1 })
                        foreach (bool ceil in new[] { false, true })
                            foreach (bool includePad in max || padding == 0 ? new[] { true } : new[] { true, false })
                                if (2 * padding <= kernel) yield return new PoolSpec(max, kernel, stride, padding, ceil, includePad);
    }

    /// <summary>PyTorch's pooled extent: floor or ceil of (n + 2p − k) / s + 1, the last window starting inside the input or its left padding.</summary>
    private static long PooledExtent(long n, PoolSpec spec)
    {
        long span = n + 2L * spec.Padding - spec.Kernel;
        if (span < 0) return -1;
        long extent = (spec.CeilMode ? (span + spec.Stride - 1) / spec.Stride : span / spec.Stride) + 1;
        if (spec.CeilMode && (extent - 1) * spec.Stride >= n + spec.Padding) extent--;
        return extent;
    }

    private static bool SameShape(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape);

    private static bool IsZero(Tensor t)
    {
        using Tensor any = t.any();
        return !any.item<bool>();
    }

    private static bool Same(Tensor a, Tensor b) => Equal(a, b);

    /// <summary>Same shape and every element equal (bit for bit, −0 = +0).</summary>
    private static bool Equal(Tensor a, Tensor b)
    {
        if (!SameShape(a, b)) return false;
        using Tensor eq = a.eq(b);
        using Tensor all = eq.all();
        return all.item<bool>();
    }
}
