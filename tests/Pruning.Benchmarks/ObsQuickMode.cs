using System.Diagnostics;
using System.Globalization;
using Pruning.Grouping;
using Pruning.Reconstruction;
using Pruning.Scheduling;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Benchmarks;

/// <summary>
/// <c>-- quick --obs [--dims 300,1200,2400] [--rows 1024] [--json]</c>: one-shot OBS/SparseGPT on one d×d Linear through
/// the public path (GradualPruner + ObsPolicy + a CalibrationSet of <c>rows</c> inputs): calibration forward, H
/// accumulation in float64, Cholesky factors, the column loop and the lazy updates. Unstructured 50 % and 2:4; the
/// median of 3 runs after one warm-up; Wanda and magnitude on the same layer for scale.
/// </summary>
internal static class ObsQuickMode
{
    public static bool Wants(string[] args) => args.Contains("--obs");

    public static void Run(string[] args)
    {
        int[] dims = Value(args, "--dims")?.Split(',').Select(d => int.Parse(d, CultureInfo.InvariantCulture)).ToArray() ?? [300, 1200, 2400];
        int rows = Value(args, "--rows") is { } r ? int.Parse(r, CultureInfo.InvariantCulture) : 1024;
        bool json = args.Contains("--json");
        foreach (int d in dims)
            foreach (var (label, granularity) in new[] { ("50%", PruningGranularity.Element), ("2:4", PruningGranularity.NOfM(2, 4)) })
                foreach (string method in new[] { "obs", "wanda", "magnitude" })
                {
                    double seconds = Median(d, rows, method, granularity);
                    string line = FormattableString.Invariant(
                        $"{{\"benchmark\":\"one-shot\",\"method\":\"{method}\",\"d\":{d},\"rows\":{rows},\"pattern\":\"{label}\",\"seconds\":{seconds:F4},\"threads\":{torch.get_num_threads()}}}");
                    Console.WriteLine(json ? line : FormattableString.Invariant($"{method,-9} {d,5}×{d,-5} {label,-4} {rows} calibration rows: {seconds,8:F3} s"));
                }
    }

    private static string? Value(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    private static double Median(int d, int rows, string method, PruningGranularity granularity)
    {
        var times = new List<double>();
        for (int run = 0; run < 4; run++)
        {
            using var scope = torch.NewDisposeScope();
            torch.manual_seed(run);
            var model = nn.Sequential(("fc", nn.Linear(d, d)));
            // Correlated inputs with uneven scales, in batches of 256 rows.
            Tensor x = torch.randn(rows, d).mm(torch.randn(d, d).mul(0.1).add(torch.eye(d))).mul(torch.linspace(0.1, 2, d));
            var calibration = new CalibrationSet(x.split(256).ToList());
            Criteria.MaskPolicy? policy = method switch
            {
                "obs" => new ObsPolicy(calibration),
                "wanda" => new WandaPolicy(calibration),
                _ => null,
            };
            using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5), Policy = policy, Granularity = granularity });
            var clock = Stopwatch.StartNew();
            pruner.Step();
            if (run > 0) times.Add(clock.Elapsed.TotalSeconds);
        }
        times.Sort();
        return times[times.Count / 2];
    }
}
