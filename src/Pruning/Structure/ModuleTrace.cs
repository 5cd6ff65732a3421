using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Structure;

/// <summary>
/// The dataflow of one forward pass, recorded with hooks on the leaf modules: which module read which tensor. The
/// operations between module calls that hooks cannot see (a residual add, a concatenation, a functional ReLU, flatten
/// or global average pooling) are recognized from the tensors themselves: a module's input that is not an earlier module's output must
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
    }

    /// <summary>One tensor of the pass: what made it (Module holds the module's dotted name), from which earlier nodes, and its shape.</summary>
    internal sealed record Node(int Id, NodeKind Kind, long[] Shape, int[] Inputs, string? Module);

    private ModuleTrace(List<Node> nodes, int output)
    {
        Nodes = nodes;
        Output = output;
    }

    public IReadOnlyList<Node> Nodes { get; }

    /// <summary>The node the model returns.</summary>
    public int Output { get; }

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

        // The most recent tensor it equals, else the first of: ReLU(v), flatten(v), mean over H and W, a + b, ReLU(a + b), cat(parts).
        int Find(Tensor t, string reader)
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
            throw new NotSupportedException(
                $"{reader} is not the model's input, the output of a module, or a sum of two (add, then optionally ReLU), a concatenation along channels, a ReLU, a flatten or a global average pooling of those: an operation the trace cannot see computed it. Make that operation a module, or declare the block with Residual.");
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
                if (found < 0) return null;
                parts.Add(found);
                offset += values[found].shape[1];
            }
            return parts;
        }
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
