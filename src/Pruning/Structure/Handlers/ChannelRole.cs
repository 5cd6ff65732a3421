namespace Pruning.Structure;

/// <summary>What a module does with the channels (dimension 1) of the tensor it reads.</summary>
public enum ChannelRole
{
    /// <summary>
    /// It writes channels of its own, each from all of its input channels (a Conv2d with one group, a Linear): a
    /// dependency group starts at it, its rows are the group's channels and its columns are its inputs'.
    /// </summary>
    Produces,

    /// <summary>
    /// It holds one parameter row per channel of its input and passes the channels on (a BatchNorm, a depthwise
    /// convolution): it joins its input's group, and its rows go with the group's channels.
    /// </summary>
    ChannelWise,

    /// <summary>It has no parameters, acts on each channel alone and maps 0 to 0 (ReLU, pooling): channels pass through it.</summary>
    PassThrough,

    /// <summary>Anything else: the channels it reads and writes are kept whole, with the reason.</summary>
    Opaque,
}
