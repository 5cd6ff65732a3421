using System.Runtime.InteropServices;

namespace Pruning.Interop;

/// <summary>
/// ATen's switch for handing convolutions and LSTMs to oneDNN (PyTorch's <c>torch.backends.mkldnn.enabled</c>), which
/// TorchSharp 0.107 does not expose. It is read at every call, so it can be flipped at any time after libtorch loads.
/// Reached through libtorch_cpu's exported C++ symbols (Itanium ABI: Linux, macOS): <c>at::globalContext()</c>,
/// <c>at::Context::userEnabledMkldnn() const</c> and <c>at::Context::setUserEnabledMkldnn(bool)</c>. Where they are
/// not found (another ABI or libtorch), <see cref="Available"/> is false and nothing is changed.
/// </summary>
internal static unsafe class OneDnnSwitch
{
    private static readonly Lazy<Functions?> Resolved = new(Resolve);

    /// <summary>Whether the switch was found in the loaded libtorch. Load libtorch first (any torch call).</summary>
    public static bool Available => Resolved.Value is not null;

    /// <summary>Whether ATen hands work to oneDNN; null when the switch is not <see cref="Available"/>.</summary>
    public static bool? Enabled
    {
        get => Resolved.Value is { } f ? f.Get(f.Context()) != 0 : null;
    }

    /// <summary>Turns oneDNN on or off in ATen; false when the switch is not <see cref="Available"/>.</summary>
    public static bool TrySet(bool enabled)
    {
        if (Resolved.Value is not { } f) return false;
        f.Set(f.Context(), enabled ? (byte)1 : (byte)0);
        return Enabled == enabled;
    }

    private sealed class Functions(IntPtr context, IntPtr get, IntPtr set)
    {
        public IntPtr Context() => ((delegate* unmanaged<IntPtr>)context)();

        public byte Get(IntPtr at) => ((delegate* unmanaged<IntPtr, byte>)get)(at);

        public void Set(IntPtr at, byte on) => ((delegate* unmanaged<IntPtr, byte, void>)set)(at, on);
    }

    private static Functions? Resolve()
    {
        foreach (string name in (string[])["libtorch_cpu", "torch_cpu"])
        {
            if (!NativeLibrary.TryLoad(name, typeof(OneDnnSwitch).Assembly, null, out IntPtr library)) continue;
            if (NativeLibrary.TryGetExport(library, "_ZN2at13globalContextEv", out IntPtr context)
                && NativeLibrary.TryGetExport(library, "_ZNK2at7Context17userEnabledMkldnnEv", out IntPtr get)
                && NativeLibrary.TryGetExport(library, "_ZN2at7Context20setUserEnabledMkldnnEb", out IntPtr set))
                return new Functions(context, get, set);
        }
        return null;
    }
}
