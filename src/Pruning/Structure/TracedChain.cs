using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using NodeKind = Pruning.Structure.ModuleTrace.NodeKind;

namespace Pruning.Structure;

/// <summary>
/// A traced model as the exporters read it: a chain of its own modules in the order forward runs them, where a residual
/// add, a concatenation or a squeeze-and-excitation scaling becomes a <see cref="TracedBranches"/> item holding its
/// branches (each a chain from the tensor they fork from). Functional ReLUs, flattens and poolings become new
/// parameterless modules. The chain is checked against the model on the example before it is returned.
/// </summary>
internal static class TracedChain
{
    /// <summary>The chain of <paramref name="model"/>, traced on <paramref name="example"/>.</summary>
    /// <exception cref="NotSupportedException">The trace fails, the graph is not a chain of forks that join again (series-parallel), or the chain does not reproduce the model; the message names the module.</exception>
    public static List<(string Name, nn.Module Module)> From(nn.Module model, Tensor example)
    {
        ModuleTrace trace = ModuleTrace.Run(model, example);
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        modules.TryAdd("", model);
        IReadOnlyList<ModuleTrace.Node> nodes = trace.Nodes;

        // Immediate dominators: node ids are in execution order, so every input has a smaller id than its reader.
        var idom = new int[nodes.Count];
        int Meet(int a, int b)   // the nearest node every path to a and to b passes through
        {
            while (a != b)
            {
                while (a > b) a = idom[a];
                while (b > a) b = idom[b];
            }
            return a;
        }
        foreach (var node in nodes.Skip(1))
            idom[node.Id] = node.Inputs.Skip(1).Aggregate(node.Inputs[0], Meet);

        var emitted = new HashSet<int>();
        List<(string, nn.Module)> Build(int from, int to)
        {
            var items = new List<(string, nn.Module)>();
            for (int current = to; current != from;)
            {
                var node = nodes[current];
                string name = node.Module is "" ? model.GetName() : node.Module ?? $"{node.Kind.ToString().ToLowerInvariant()}#{node.Id}";
                if (current < from || node.Kind == NodeKind.Input || !emitted.Add(current))
                    throw new NotSupportedException($"The model's graph is not a chain of blocks whose branches fork from one tensor and join again (an add, a concatenation or a scaling): '{name}' is read along two such paths. It cannot be exported.");
                // A node with one input is one module; a join holds its branches from the fork.
                nn.Module? single = node.Kind switch
                {
                    NodeKind.Module => modules[node.Module!],
                    NodeKind.Relu => nn.ReLU(),
                    NodeKind.Flatten => nn.Flatten(),
                    NodeKind.GlobalAveragePool => nn.AdaptiveAvgPool2d(1),
                    NodeKind.Pool when node.Pool.Max => nn.MaxPool2d(node.Pool.Kernel, node.Pool.Stride, node.Pool.Padding, ceil_mode: node.Pool.CeilMode),
                    NodeKind.Pool => nn.AvgPool2d(node.Pool.Kernel, node.Pool.Stride, node.Pool.Padding, ceil_mode: node.Pool.CeilMode, count_include_pad: node.Pool.CountIncludePad),
                    _ => null,
                };
                if (single is not null)
                {
                    items.Add((name, single));
                    current = node.Inputs[0];
                    continue;
                }
                int fork = idom[current];
                var combine = node.Kind switch { NodeKind.Add => TracedBranches.Combine.Add, NodeKind.Scale => TracedBranches.Combine.Scale, _ => TracedBranches.Combine.Concat };
                items.Add((name, Join(name, combine, fork, node.Inputs)));
                current = fork;
            }
            items.Reverse();
            return items;
        }

        // The branches of a join from its fork. Consecutive parts of a concatenation that fork again below it (Inception's
        // cat([cat([a(y), b(y)]), …]) with y computed once) become one branch: the shared layers, then a nested concatenation.
        TracedBranches Join(string name, TracedBranches.Combine combine, int fork, IReadOnlyList<int> parts)
        {
            var branches = new List<IReadOnlyList<(string, nn.Module)>>();
            for (int i = 0; i < parts.Count;)
            {
                int j = i + 1, meet = parts[i];
                while (combine == TracedBranches.Combine.Concat && j < parts.Count && Meet(meet, parts[j]) is int m && m != fork) (meet, j) = (m, j + 1);
                if (j == i + 1) branches.Add(Build(fork, parts[i]));
                else
                {
                    var shared = Build(fork, meet);
                    shared.Add(($"{name}[{i}..{j - 1}]", Join(name, TracedBranches.Combine.Concat, meet, parts.Skip(i).Take(j - i).ToArray())));
                    branches.Add(shared);
                }
                i = j;
            }
            return new TracedBranches(combine, branches);
        }

        List<(string, nn.Module)> chain = Build(0, trace.Output);
        Verify(model, chain, example);
        return chain;
    }

    /// <summary>
    /// The chain must give the model's outputs (the same operations, so within rounding) on the example and on fresh
    /// inputs at other scales (<see cref="ModuleTrace.VerificationInputs"/>).
    /// </summary>
    private static void Verify(nn.Module model, List<(string Name, nn.Module Module)> chain, Tensor example)
    {
        bool training = model.training;
        model.eval();
        try
        {
            using var noGrad = torch.no_grad();
            foreach (var (input, description) in ModuleTrace.VerificationInputs(example))
            {
                using var scope = torch.NewDisposeScope();
                using Tensor owned = input;
                Tensor expected = ((nn.Module<Tensor, Tensor>)model).call(input.clone());
                Tensor actual = TracedBranches.Run(chain, input.clone());
                double scale = Math.Max(1, expected.abs().max().item<float>());
                if (!actual.shape.SequenceEqual(expected.shape) || !(actual.sub(expected).abs().max().item<float>() <= 1e-5 * scale))
                    throw new NotSupportedException($"The traced chain of modules does not reproduce the model's outputs on {description}: forward does something between its modules that the trace did not see. It cannot be exported.");
            }
        }
        finally
        {
            model.train(training);
        }
    }
}
