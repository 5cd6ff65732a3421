using System.Runtime.Intrinsics.X86;
using System.Text;

namespace Pruning.Interop;

/// <summary>What CPUID says about this processor, for the health report.</summary>
internal static class HostCpu
{
    /// <summary>E.g. "AuthenticAMD family 26 model 2, AVX-512".</summary>
    public static string Describe()
    {
        if (!X86Base.IsSupported) return System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString();
        int signature = X86Base.CpuId(1, 0).Eax;
        int family = (signature >> 8) & 0xF, model = (signature >> 4) & 0xF;
        if (family == 0xF) family += (signature >> 20) & 0xFF;
        if (family >= 0x6) model += ((signature >> 16) & 0xF) << 4;
        string vectors = Avx512F.IsSupported ? "AVX-512" : Avx2.IsSupported ? "AVX2" : "no AVX2";
        return $"{Vendor()} family {family} model {model}, {vectors}";
    }

    /// <summary>
    /// True on an AMD processor whose cache-topology leaf (CPUID 0x8000001D) reads as zeros, as some hypervisors
    /// answer it. oneDNN 3.7's CPU detection (libtorch 2.10) reads that leaf on every AMD processor and then takes each
    /// cache to be 1 byte large.
    /// </summary>
    public static bool HidesAmdCacheTopology() =>
        X86Base.IsSupported && Vendor() == "AuthenticAMD"
        && (X86Base.CpuId(unchecked((int)0x8000001D), 0).Eax & 0x1F) == 0;   // cache type 0: "no more caches"

    private static string Vendor()
    {
        var (_, ebx, ecx, edx) = X86Base.CpuId(0, 0);
        return Encoding.ASCII.GetString([.. BitConverter.GetBytes(ebx), .. BitConverter.GetBytes(edx), .. BitConverter.GetBytes(ecx)]);
    }
}
