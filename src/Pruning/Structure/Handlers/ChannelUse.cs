namespace Pruning.Structure;

/// <summary>How a module uses the channels it reads: its <see cref="ChannelRole"/>, and what it is, for messages.</summary>
/// <param name="Role">What it does with the channels.</param>
/// <param name="What">A noun phrase for messages, e.g. "a BatchNorm" or "a grouped convolution (groups = 2) that is not
/// depthwise"; for <see cref="ChannelRole.Opaque"/> it is the reason the channels are kept ("'conv' is …").</param>
public sealed record ChannelUse(ChannelRole Role, string What)
{
    /// <summary>It writes channels of its own (<see cref="ChannelRole.Produces"/>).</summary>
    public static ChannelUse Produces(string what) => new(ChannelRole.Produces, what);

    /// <summary>One parameter row per channel of its input (<see cref="ChannelRole.ChannelWise"/>).</summary>
    public static ChannelUse ChannelWise(string what) => new(ChannelRole.ChannelWise, what);

    /// <summary>Channels pass through it (<see cref="ChannelRole.PassThrough"/>).</summary>
    public static ChannelUse PassThrough(string what) => new(ChannelRole.PassThrough, what);

    /// <summary>Its channels are kept; <paramref name="what"/> says why ("a Linear over a tensor of rank 4").</summary>
    public static ChannelUse Opaque(string what) => new(ChannelRole.Opaque, what);
}
