using System.Runtime.InteropServices;

namespace Pruning.Interop;

/// <summary>
/// ATen's switches for handing convolutions and LSTMs to oneDNN and convolutions to NNPACK (PyTorch's
/// <c>torch.backends.mkldnn.enabled</c> and <c>torch.backends.nnpack</c>), which TorchSharp 0.107 does not expose. ATen
/// reads them at every call, so they can be flipped at any time after libtorch loads. Reached through libtorch_cpu's
/// exported C++ symbols (Itanium ABI: Linux, macOS): <c>at::globalContext()</c> and <c>at::Context</c>'s
/// <c>userEnabledMkldnn</c>, <c>setUserEnabledMkldnn</c>, <c>userEnabledNNPACK</c>, <c>setUserEnabledNNPACK</c>. Where
/// they are not found (another ABI, another libtorch), <see cref="Available"/> is false and nothing is changed.
/// </summary>
internal static class AtenBackends
{
    private static readonly Lazy<Switches?> Resolved = new(Resolve);

    /// <summary>Whether the switches were found in the loaded libtorch. Load libtorch first (any torch call).</summary>
    public static bool Available => Resolved.Value is not null;

    /// <summary>Whether ATen hands work to oneDNN; null when the switches are not <see cref="Available"/>.</summary>
    public static bool? OneDnn => Resolved.Value?.OneDnn;

    /// <summary>Whether ATen may hand convolutions to NNPACK; null when the switches are not <see cref="Available"/>.</summary>
    public static bool? Nnpack => Resolved.Value?.Nnpack;

    /// <summary>Sets both switches; false when they are not <see cref="Available"/> or did not take.</summary>
    public static bool TrySet(bool oneDnn, bool nnpack)
    {
        if (Resolved.Value is not { } switches) return false;
        switches.Set(oneDnn, nnpack);
        return switches.OneDnn == oneDnn && switches.Nnpack == nnpack;
    }

    private sealed unsafe class Switches(IntPtr context, IntPtr getOneDnn, IntPtr setOneDnn, IntPtr getNnpack, IntPtr setNnpack)
    {
        public bool OneDnn => ((delegate* unmanaged<IntPtr, byte>)getOneDnn)(At()) != 0;

        public bool Nnpack => ((delegate* unmanaged<IntPtr, byte>)getNnpack)(At()) != 0;

        public void Set(bool oneDnn, bool nnpack)
        {
            ((delegate* unmanaged<IntPtr, byte, void>)setOneDnn)(At(), oneDnn ? (byte)1 : (byte)0);
            ((delegate* unmanaged<IntPtr, byte, void>)setNnpack)(At(), nnpack ? (byte)1 : (byte)0);
        }

        private IntPtr At() => ((delegate* unmanaged<IntPtr>)context)();
    }

    private static Switches? Resolve()
    {
        string[] symbols =
        [
            "_ZN2at13globalContextEv",
            "_ZNK2at7Context17userEnabledMkldnnEv", "_ZN2at7Context20setUserEnabledMkldnnEb",
            "_ZNK2at7Context17userEnabledNNPACKEv", "_ZN2at7Context20setUserEnabledNNPACKEb",
        ];
        foreach (string name in (string[])["libtorch_cpu", "torch_cpu"])
        {
            if (!NativeLibrary.TryLoad(name, typeof(AtenBackends).Assembly, null, out IntPtr library)) continue;
            var addresses = new IntPtr[symbols.Length];
            bool all = true;
            for (int i = 0; i < symbols.Length && all; i++)
                all = NativeLibrary.TryGetExport(library, symbols[i], out addresses[i]);
            if (all) return new Switches(addresses[0], addresses[1], addresses[2], addresses[3], addresses[4]);
        }
        return null;
    }
}
