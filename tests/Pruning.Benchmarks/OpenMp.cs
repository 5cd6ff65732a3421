using System.Runtime.InteropServices;

namespace Pruning.Benchmarks;

/// <summary>
/// libtorch's OpenMP workers spin for a while after every parallel torch call. Measured side by side in one
/// process, that spinning takes the second core away from our kernels (SpMM at batch 64 ran 6.5 ms instead of
/// 3.4 ms). OMP_WAIT_POLICY=PASSIVE makes them sleep; OpenMP reads it when libtorch loads, so it is set in the
/// native environment before the first torch call (.NET's Environment.SetEnvironmentVariable does not reach it).
/// </summary>
internal static partial class OpenMp
{
    public static void PreferPassiveWaiting()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is not null) return;
        _ = SetEnv("OMP_WAIT_POLICY", "PASSIVE", 0);
    }

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);
}
