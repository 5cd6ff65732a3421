using System.Globalization;
using System.Text;

namespace Pruning.Interop;

/// <summary>What <see cref="TorchHealth.Check"/> or <see cref="TorchHealth.Ensure"/> found: every known-answer check,
/// the CPU, and what to do when something is wrong.</summary>
public sealed class TorchHealthReport
{
    internal TorchHealthReport(IReadOnlyList<TorchHealthResult> results, bool? oneDnnEnabled, TimeSpan elapsed,
        IReadOnlyList<TorchHealthResult>? beforeRemedy = null, string? remedyApplied = null)
    {
        Results = results;
        OneDnnEnabled = oneDnnEnabled;
        Elapsed = elapsed;
        FailuresBeforeRemedy = beforeRemedy?.Where(r => !r.Passed).ToArray() ?? [];
        RemedyApplied = remedyApplied;
        Cpu = HostCpu.Describe();
        CacheTopologyHidden = HostCpu.HidesAmdCacheTopology();
    }

    /// <summary>Every check, in the order run.</summary>
    public IReadOnlyList<TorchHealthResult> Results { get; }

    /// <summary>The checks libtorch got wrong (after the remedy, when one was applied).</summary>
    public IReadOnlyList<TorchHealthResult> Failures => Results.Where(r => !r.Passed).ToArray();

    /// <summary>True when every check passed.</summary>
    public bool Healthy => Results.All(r => r.Passed);

    /// <summary>The checks that failed before <see cref="RemedyApplied"/>; empty when nothing was applied.</summary>
    public IReadOnlyList<TorchHealthResult> FailuresBeforeRemedy { get; }

    /// <summary>What <see cref="TorchHealth.Ensure"/> changed in this process to make the checks pass; null when nothing.</summary>
    public string? RemedyApplied { get; }

    /// <summary>Whether ATen handed convolutions and LSTMs to oneDNN when the checks ran; null when that switch could
    /// not be read in this libtorch.</summary>
    public bool? OneDnnEnabled { get; }

    /// <summary>Vendor, family, model and vector width, from CPUID.</summary>
    public string Cpu { get; }

    /// <summary>True on an AMD CPU whose cache-topology leaf (CPUID 0x8000001D) reads as zeros, the cause of oneDNN's wrong
    /// results measured so far (docs/reference/installation.md).</summary>
    public bool CacheTopologyHidden { get; }

    /// <summary>How long the checks took (both rounds, for <see cref="TorchHealth.Ensure"/>).</summary>
    public TimeSpan Elapsed { get; }

    /// <summary>What to do about <see cref="Failures"/>; null when healthy.</summary>
    public string? Remedy => Healthy ? null : RemedyFor(Failures, OneDnnEnabled);

    /// <summary>One line for a log or a console.</summary>
    public string Summary
    {
        get
        {
            string host = Cpu + (CacheTopologyHidden ? ", cache topology hidden (CPUID 0x8000001D reads 0)" : "");
            if (Healthy && RemedyApplied is null)
                return Invariant($"libtorch health: all {Results.Count} known-answer checks pass ({host}; oneDNN {OnOff(OneDnnEnabled)}).");
            if (Healthy)
                return Invariant($"libtorch health: WARNING: libtorch computed {FailuresBeforeRemedy.Count} of {Results.Count} known answers wrong on this CPU ({host}): {Names(FailuresBeforeRemedy)}. {RemedyApplied}; all {Results.Count} pass now. See docs/reference/installation.md.");
            return Invariant($"libtorch health: WARNING: libtorch computes {Failures.Count} of {Results.Count} known answers wrong on this CPU ({host}): {Names(Failures)}. {Remedy}");
        }
    }

    /// <summary>The summary, then every check with its error and component.</summary>
    public override string ToString()
    {
        var text = new StringBuilder(Summary).AppendLine();
        foreach (TorchHealthResult failure in FailuresBeforeRemedy)
            text.Append("  before the remedy, FAILED ").AppendLine(failure.ToString());
        foreach (TorchHealthResult result in Results)
            text.Append(result.Passed ? "  ok     " : "  FAILED ").AppendLine(result.ToString());
        return text.Append(Invariant($"  {Results.Count} checks in {Elapsed.TotalMilliseconds:F0} ms")).ToString();
    }

    /// <summary>The environment setting that avoids oneDNN's wrong kernels; oneDNN reads it once, before its first use.</summary>
    internal const string EnvironmentRemedy = "DNNL_MAX_CPU_ISA=SSE41";

    private static string RemedyFor(IReadOnlyList<TorchHealthResult> failures, bool? oneDnn)
    {
        if (oneDnn == true && AtenBackends.Available)
            return "Remedy: call Pruning.Interop.TorchHealth.Ensure() before training (the library does on first use unless PRUNING_TORCH_HEALTH=off): " +
                   "it turns oneDNN and NNPACK off in ATen for this process, as torch.backends.mkldnn.enabled = False does in PyTorch; " +
                   $"or start the process with {EnvironmentRemedy} in its environment.";
        if (oneDnn != false)
            return $"Remedy: start the process with {EnvironmentRemedy} in its environment (oneDNN reads it once, before its first use; setting it later has no effect).";
        return $"No remedy is known to this library for {string.Join("; ", failures.Select(f => f.Component).Distinct())}: " +
               "try MKL_ENABLE_INSTRUCTIONS=AVX2 (MKL) or ATEN_CPU_CAPABILITY=default (ATen's own kernels) in the environment before the process starts, and report the CPU.";
    }

    private static string Names(IEnumerable<TorchHealthResult> results) =>
        string.Join("; ", results.Select(r => Invariant($"{r.Check} off by {r.RelativeError:0.0E+0} of the range in {r.Component}")));

    private static string OnOff(bool? enabled) => enabled switch { true => "on", false => "off", null => "switch not found" };

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
