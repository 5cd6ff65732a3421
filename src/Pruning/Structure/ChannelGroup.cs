namespace Pruning.Structure;

/// <summary>
/// Channels that must be pruned and removed together (a dependency group): the layers that write them (the two
/// sides of a residual add are one group), the BatchNorms and depthwise convolutions that act on each of them, and the
/// layers that read them.
/// </summary>
public sealed class ChannelGroup
{
    internal ChannelGroup(long channels, IReadOnlyList<string> producers, IReadOnlyList<string> channelWise, IReadOnlyList<string> consumers)
    {
        Channels = channels;
        Producers = producers;
        ChannelWise = channelWise;
        Consumers = consumers;
    }

    /// <summary>The weight a pruner targets for the group: the first producer's (e.g. <c>conv1.weight</c>); the others follow its mask.</summary>
    public string Weight => $"{Producers[0]}.weight";

    /// <summary>How many channels the group has.</summary>
    public long Channels { get; }

    /// <summary>The Conv2d and Linear layers whose output channels these are, in the order the model runs them.</summary>
    public IReadOnlyList<string> Producers { get; }

    /// <summary>The BatchNorms and depthwise convolutions with one parameter row per channel of the group.</summary>
    public IReadOnlyList<string> ChannelWise { get; }

    /// <summary>The Conv2d and Linear layers that read the channels (their inputs for them go when the channels do).</summary>
    public IReadOnlyList<string> Consumers { get; }

    /// <inheritdoc />
    public override string ToString() => $"{Channels} channels: {string.Join(" + ", Producers)}";
}
