namespace Pruning.Tests;

/// <summary>Tests that touch libtorch's global state (seeds, default dtype) run one at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TorchCollection
{
    public const string Name = "torch";
}
