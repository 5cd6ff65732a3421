namespace Pruning.Grouping;

/// <summary>How a norm turns the element scores of a group into one group score.</summary>
public enum LpNorm
{
    /// <summary>Σ|s| (Li et al. 2017 rank filters by the L1 norm of their weights).</summary>
    L1,

    /// <summary>√Σs².</summary>
    L2,

    /// <summary>max |s|.</summary>
    LInfinity,
}
