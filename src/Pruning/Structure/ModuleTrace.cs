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

    private ModuleTrace(List<Node> nodes, int output)
    {
        Nodes = nodes;
        Output = output;
    }

    public IReadOnlyList<Node> Nodes { get; }

    /// <summary>The node the model returns.</summary>
    public int Output { get; }

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
    /// Runs <paramref name="model"/> once on <paramref name="example"/> (in eval mode, without gradients; the mode is
    /// restored) and explains every tensor a leaf module reads.
    /// </summary>
    /// <exception cref="NotSupportedException">A tensor cannot be explained, or a module's output is never read; the message names the module.</exception>
    public static ModuleTrace Run(nn.Module model, Tensor example)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(example);
        var calls = new List<(string? Name, Tensor Input, Tensor Output)>();
        var handles = new List<Action>();
        var pending = new Dictionary<string, Tensor>();
        bool training = model.training;
        try
        {
            // TorchSharp's named_modules leaves out the model itself, which is the only leaf when it is one layer.
            var leaves = model.children().Any() ? model.named_modules().Where(m => !m.module.children().Any()) : [("", model)];
            foreach (var (name, module) in leaves)
            {
                if (module is not nn.Module<Tensor, Tensor> leaf) continue; // never called with one tensor: its result shows up unexplained
                // Snapshots leave the model's own dispose scopes: ResNet's forward disposes its temporaries on return.
                var pre = leaf.register_forward_pre_hook((_, input) =>
                {
                    pending[name] = input.detach().clone().DetachFromDisposeScope();
                    return input;
                });
                handles.Add(pre.remove);
                var post = leaf.register_forward_hook((_, _, output) =>
                {
                    calls.Add((name, pending[name], output.detach().clone().DetachFromDisposeScope()));
                    pending.Remove(name);
                    return output;
                });
                handles.Add(post.remove);
            }
            model.eval();
            Tensor result;
            using (torch.no_grad())
            using (var scope = torch.NewDisposeScope())
                result = ((nn.Module<Tensor, Tensor>)model).call(example).detach().clone().DetachFromDisposeScope();
            calls.Add((null, result, result));   // the model's output
            return Explain(example, calls);
        }
        finally
        {
            foreach (Action remove in handles) remove();
            model.train(training);
            foreach (var (_, input, output) in calls)
            {
                input.Dispose();
                if (!ReferenceEquals(input, output)) output.Dispose();
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
        return new ModuleTrace(nodes, output);

        // The most recent tensor it equals, else the first of: ReLU(v), flatten(v), mean over H and W, a pooling, x·s per channel, a + b, ReLU(a + b), cat(parts).
        int Find(Tensor t, string reader) => TryFind(t) ?? throw new NotSupportedException(
            $"{reader} is not the model's input, the output of a module, or a sum of two (add, then optionally ReLU), a concatenation along channels, a ReLU, a flatten, a pooling or a per-channel scaling of those: an operation the trace cannot see computed it. Make that operation a module, or declare the block with Residual.");

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
                    bool perChannel = s.shape[0] == t.shape[0] && s.shape[1] == t.shape[1] && (s.dim() == 2 || s.dim() == 4 && s.shape[2] == 1 && s.shape[3] == 1);
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
