using System.Collections.Concurrent;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Structure;

/// <summary>
/// The <see cref="ModuleHandler"/> of each module type the channel analysis knows: Conv2d, Linear, BatchNorm1d/2d and
/// the channel-wise activations, poolings, Dropout and Identity are built in. A type without a handler that holds
/// parameters is refused by name; one without parameters keeps its channels.
/// </summary>
public static class ModuleHandlers
{
    private static readonly ConcurrentDictionary<Type, ModuleHandler> Handlers = new(BuiltIn());

    /// <summary>
    /// Uses <paramref name="handler"/> for modules of type <typeparamref name="TModule"/> (and types derived from it
    /// that have no handler of their own), in every <see cref="ChannelGraph"/> traced from now on; replaces the handler
    /// the type had, built-in ones included.
    /// </summary>
    public static void Register<TModule>(ModuleHandler handler) where TModule : nn.Module
    {
        ArgumentNullException.ThrowIfNull(handler);
        Handlers[typeof(TModule)] = handler;
    }

    /// <summary>The handler of <paramref name="module"/>'s type or its nearest base type; null when none is registered.</summary>
    public static ModuleHandler? For(nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        for (Type? type = module.GetType(); type is not null && type != typeof(object); type = type.BaseType)
            if (Handlers.TryGetValue(type, out ModuleHandler? handler)) return handler;
        return null;
    }

    private static IEnumerable<KeyValuePair<Type, ModuleHandler>> BuiltIn()
    {
        yield return new(typeof(Conv2d), new Conv2dHandler());
        yield return new(typeof(Linear), new LinearHandler());
        yield return new(typeof(BatchNorm), new BatchNormHandler());
        var passThrough = new PassThroughHandler();
        foreach (Type type in new[]
                 {
                     typeof(ReLU), typeof(ReLU6), typeof(LeakyReLU), typeof(ELU), typeof(GELU), typeof(SiLU), typeof(Tanh), typeof(Hardswish),
                     typeof(MaxPool2d), typeof(AvgPool2d), typeof(AdaptiveAvgPool2d), typeof(Dropout), typeof(Dropout2d), typeof(Identity),
                 })
            yield return new(type, passThrough);
    }
}
