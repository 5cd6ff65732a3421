namespace Pruning.Selection;

/// <summary>How the sparsity target is shared among the pruned tensors.</summary>
public enum PruningScope
{
    /// <summary>Each tensor is pruned to the target on its own (tfmot's behaviour).</summary>
    LayerWise,

    /// <summary>
    /// One ranking across all targets (like <c>torch.nn.utils.prune.global_unstructured</c>): the model as a whole
    /// reaches the target, and tensors with many small scores end up sparser than others.
    /// </summary>
    Global,
}
