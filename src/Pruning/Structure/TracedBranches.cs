using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Structure;

/// <summary>
/// A fork and its join in a traced chain: branches run on the same input, then added (a residual block), concatenated
/// along channels, or the first scaled per channel by the second (squeeze-and-excitation). It does not register the
/// branches' modules as its own: they stay the model's.
/// </summary>
internal sealed class TracedBranches : nn.Module<Tensor, Tensor>
{
    /// <summary>How the branches' results meet.</summary>
    public enum Combine
    {
        Add,
        Concat,
        Scale,
    }

    public TracedBranches(Combine combine, IReadOnlyList<IReadOnlyList<(string Name, nn.Module Module)>> branches) : base(nameof(TracedBranches))
    {
        How = combine;
        Branches = branches;
    }

    public Combine How { get; }

    /// <summary>The branches, in the order their results are combined (for a scaling: the scaled, then the factors); an empty branch is the identity.</summary>
    public IReadOnlyList<IReadOnlyList<(string Name, nn.Module Module)>> Branches { get; }

    public override Tensor forward(Tensor input)
    {
        using var scope = torch.NewDisposeScope();
        Tensor[] results = Branches.Select(b => Run(b, input)).ToArray();
        Tensor result = How switch
        {
            Combine.Add => results.Skip(1).Aggregate(results[0], (a, b) => a.add(b)),
            Combine.Scale => results[0].mul(results[1].reshape(results[0].shape[0], results[0].shape[1], 1, 1)),
            _ => torch.cat(results, 1),
        };
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>Runs a chain (in the caller's dispose scope).</summary>
    public static Tensor Run(IReadOnlyList<(string Name, nn.Module Module)> chain, Tensor input)
    {
        Tensor x = input;
        foreach (var (_, module) in chain) x = ((nn.Module<Tensor, Tensor>)module).call(x);
        return x;
    }
}
