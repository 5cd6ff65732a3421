using System.Runtime.InteropServices;

namespace Pruning.Interop;

/// <summary>
/// libtorch's OpenMP workers spin for a while after every parallel torch call. In a process that also runs the sparse
/// kernels, that spinning takes cores away from them: measured here, a batch-64 SpMM right after a TorchSharp matmul
/// took 6.5 ms instead of 3.4 ms on 2 cores. Passive waiting makes the workers sleep instead. OpenMP reads the
/// setting once, when libtorch loads, so call <see cref="MakePassive"/> first thing in Main, before any torch call.
/// </summary>
public static partial class OpenMpWaiting
{
    /// <summary>
    /// Sets OMP_WAIT_POLICY=PASSIVE in the native environment (Linux), unless the variable is already set. Returns
    /// true when it set it. .NET's Environment.SetEnvironmentVariable does not reach native code, hence setenv.
    /// </summary>
    public static bool MakePassive()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is not null) return false;
        return SetEnv("OMP_WAIT_POLICY", "PASSIVE", 0) == 0;
    }

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);
}
