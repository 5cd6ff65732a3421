using System.Runtime.CompilerServices;
using Pruning.Interop;

namespace Samples.Tests;

internal static class TorchHost
{
    /// <summary>
    /// Before any test compares against TorchSharp: libtorch's known answers, with the in-process remedy where it helps
    /// (oneDNN off on hosts where it computes wrong results; docs/reference/installation.md). No tolerance changes with it.
    /// </summary>
    [ModuleInitializer]
    internal static void CheckLibTorch() => TorchHealth.Ensure();
}
