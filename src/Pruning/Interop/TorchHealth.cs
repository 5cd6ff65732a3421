using System.Diagnostics;
using System.Runtime.InteropServices;
using TorchSharp;

namespace Pruning.Interop;

/// <summary>
/// Known-answer checks of the libtorch under TorchSharp: a few small convolutions (forward and gradients), an LSTM and
/// a Linear, each compared with an answer we compute in double precision. libtorch 2.10 (TorchSharp-cpu 0.107) gets
/// convolutions and LSTMs wrong on some hosts: on an AMD Zen 5 whose hypervisor hides the cache topology, its oneDNN
/// generates kernels for caches of 1 byte (docs/reference/installation.md). A model trained there is wrong without any error.
/// </summary>
/// <remarks>
/// The library calls <see cref="Ensure"/> once per process, on first use (creating a <see cref="GradualPruner"/>,
/// tracing, exporting, the searches); the environment variable <c>PRUNING_TORCH_HEALTH=off</c> skips that and keeps
/// <see cref="Ensure"/> from changing any setting.
/// The checks take about 10 ms once libtorch is loaded and do not draw from torch's random generator.
/// </remarks>
public static partial class TorchHealth
{
    /// <summary>
    /// Makes libtorch's OpenMP workers sleep instead of spin between parallel torch calls: sets OMP_WAIT_POLICY=PASSIVE
    /// in the native environment (Linux), unless the variable is already set, and returns true when it set it. Call it
    /// first thing in Main, before any torch call (OpenMP reads the setting once, when libtorch loads), in a process that
    /// also runs the sparse kernels: the spinning workers take cores from them (measured here, a batch-64 SpMM right after
    /// a TorchSharp matmul took 6.5 ms instead of 3.4 ms on 2 cores). .NET's Environment.SetEnvironmentVariable does not
    /// reach native code, hence setenv.
    /// </summary>
    public static bool MakeOpenMpPassive()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is not null) return false;
        return SetEnv("OMP_WAIT_POLICY", "PASSIVE", 0) == 0;
    }

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);

    private static readonly Lazy<TorchHealthReport> Ensured = new(RunEnsure, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Runs the checks now and reports; changes nothing.</summary>
    public static TorchHealthReport Check() => CheckWith(KnownAnswers.All());

    /// <summary>
    /// Once per process: runs the checks; when oneDNN got some wrong and turning it off in ATen makes them pass, turns
    /// it off for the rest of the process, NNPACK with it (as <c>torch.backends.mkldnn.enabled = False</c> and
    /// <c>torch.backends.nnpack.set_flags(False)</c> do in PyTorch), so convolutions take ATen's own path, the one
    /// checked. Writes the report's one-line <see cref="TorchHealthReport.Summary"/> to standard error when anything
    /// failed. Later calls return the first call's report. Never throws for a failed check: read
    /// <see cref="TorchHealthReport.Healthy"/> and <see cref="TorchHealthReport.Remedy"/>. With the environment variable
    /// <c>PRUNING_TORCH_HEALTH=off</c> it checks and warns but changes no setting.
    /// </summary>
    public static TorchHealthReport Ensure() => Ensured.Value;

    /// <summary>The library's call on first use; <c>PRUNING_TORCH_HEALTH=off</c> skips it.</summary>
    internal static void EnsureOnFirstUse()
    {
        if (!TurnedOff) Ensure();
    }

    /// <summary><c>PRUNING_TORCH_HEALTH=off</c>: libtorch's settings are left as they are.</summary>
    private static bool TurnedOff =>
        string.Equals(Environment.GetEnvironmentVariable("PRUNING_TORCH_HEALTH"), "off", StringComparison.OrdinalIgnoreCase);

    internal static TorchHealthReport CheckWith(IReadOnlyList<KnownAnswer> answers)
    {
        LoadLibTorch();
        var clock = Stopwatch.StartNew();
        var results = Run(answers, out bool? oneDnn);
        return new TorchHealthReport(results, oneDnn, clock.Elapsed);
    }

    /// <summary><see cref="Ensure"/>'s work on a given set of checks, without the once-per-process cache.</summary>
    internal static TorchHealthReport EnsureWith(IReadOnlyList<KnownAnswer> answers, TextWriter? warnings, bool remedy = true)
    {
        LoadLibTorch();
        var clock = Stopwatch.StartNew();
        var first = Run(answers, out bool? oneDnn);
        TorchHealthReport report;
        if (first.All(r => r.Passed))
            report = new TorchHealthReport(first, oneDnn, clock.Elapsed);
        else if (remedy && oneDnn == true && AtenBackends.Nnpack is bool nnpack && AtenBackends.TrySet(oneDnn: false, nnpack: false))
        {
            var second = Run(answers, out bool? now);
            if (second.Count(r => !r.Passed) < first.Count(r => !r.Passed))
                report = new TorchHealthReport(second, now, clock.Elapsed, first, RemedyApplied);
            else
            {
                AtenBackends.TrySet(oneDnn: true, nnpack);   // it did not help: leave libtorch as it was
                report = new TorchHealthReport(first, oneDnn, clock.Elapsed);
            }
        }
        else
            report = new TorchHealthReport(first, oneDnn, clock.Elapsed);
        if (!report.Healthy || report.RemedyApplied is not null) warnings?.WriteLine(report.Summary);
        return report;
    }

    private const string RemedyApplied =
        "Turned oneDNN and NNPACK off in ATen for this process (as torch.backends.mkldnn.enabled = False and torch.backends.nnpack.set_flags(False))";

    private static TorchHealthReport RunEnsure() => EnsureWith(KnownAnswers.All(), Console.Error, remedy: !TurnedOff);

    /// <summary>Any torch call loads libtorch, which the switches need; loading is not part of the checks' time.</summary>
    private static void LoadLibTorch()
    {
        using (torch.zeros(1)) { }
    }

    private static TorchHealthResult[] Run(IReadOnlyList<KnownAnswer> answers, out bool? oneDnn)
    {
        oneDnn = AtenBackends.OneDnn;
        var results = new TorchHealthResult[answers.Count];
        for (int i = 0; i < answers.Count; i++)
        {
            string component = KnownAnswer.Route(answers[i].Operation, oneDnn != false);
            try
            {
                results[i] = new TorchHealthResult(answers[i].Name, component, answers[i].RelativeError());
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                results[i] = new TorchHealthResult(answers[i].Name, component, double.PositiveInfinity, e.Message);
            }
        }
        return results;
    }
}
