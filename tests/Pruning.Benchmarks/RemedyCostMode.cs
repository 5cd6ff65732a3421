using System.Diagnostics;
using System.Globalization;
using Pruning.Interop;
using Pruning.Optimizers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Benchmarks;

/// <summary>
/// <c>-- remedy-cost [--rounds 7] [--seconds 2]</c>: what TorchHealth's remedy (oneDNN and NNPACK off in ATen) costs a
/// training step, side by side in one process: LeNet-300-100 (the demo's model, batch 128), the samples' conv-BN CNN
/// (batch 128, 28×28) and a 2×256 LSTM language model (35 steps × batch 20, vocabulary 10,000). Rounds alternate the two
/// settings; each round trains for the given seconds and the median step time of each setting is printed. On a host
/// where oneDNN computes wrong results the "oneDNN on" steps are wrong too: this measures time only.
/// </summary>
internal static class RemedyCostMode
{
    public static bool Wants(string[] args) => args.Length > 0 && args[0] == "remedy-cost";

    public static int Run(string[] args)
    {
        int rounds = KernelQuickMode.Int(args, "--rounds", 7);
        double seconds = KernelQuickMode.Double(args, "--seconds", 2);
        if (!AtenBackends.Available)
        {
            Console.Error.WriteLine("ATen's oneDNN switch is not reachable in this libtorch; nothing to compare.");
            return 1;
        }
        bool oneDnn = AtenBackends.OneDnn!.Value, nnpack = AtenBackends.Nnpack!.Value;
        Console.WriteLine($"{HostCpu.Describe()}, {torch.get_num_threads()} threads; {rounds} rounds of {seconds} s per setting, alternating");
        Console.WriteLine("model                      oneDNN on (ms/step)   remedy (ms/step)   remedy / on");
        try
        {
            foreach (var (name, step) in Workloads())
            {
                var on = new List<double>();
                var off = new List<double>();
                for (int round = 0; round < rounds; round++)
                {
                    AtenBackends.TrySet(oneDnn: true, nnpack: true);
                    on.Add(MillisecondsPerStep(step, seconds));
                    AtenBackends.TrySet(oneDnn: false, nnpack: false);
                    off.Add(MillisecondsPerStep(step, seconds));
                }
                double a = Median(on), b = Median(off);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name,-26} {a,19:F2} {b,18:F2} {b / a,13:F2}×"));
            }
        }
        finally
        {
            AtenBackends.TrySet(oneDnn, nnpack);
        }
        return 0;
    }

    private static IEnumerable<(string Name, Action Step)> Workloads()
    {
        torch.manual_seed(1);
        var lenet = BenchmarkModels.LeNet300100();
        var lenetOptimizer = SafeOptim.Adam(lenet.parameters(), 1e-3);
        Tensor lenetX = torch.randn(128, 784), lenetY = torch.randint(0, 10, [128]);
        yield return ("LeNet-300-100, batch 128", () => BenchmarkModels.TrainStep(lenet, lenetOptimizer, lenetX, lenetY, null));

        var cnn = nn.Sequential(
            ("conv1", nn.Conv2d(1, 16, 3, padding: 1)), ("bn1", nn.BatchNorm2d(16)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(16, 32, 3, padding: 1)), ("bn2", nn.BatchNorm2d(32)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
            ("conv3", nn.Conv2d(32, 64, 3, padding: 1)), ("bn3", nn.BatchNorm2d(64)), ("relu3", nn.ReLU()), ("gap", nn.AdaptiveAvgPool2d(1)),
            ("flat", nn.Flatten()), ("fc", nn.Linear(64, 10)));
        var cnnOptimizer = SafeOptim.Adam(cnn.parameters(), 1e-3);
        Tensor cnnX = torch.randn(128, 1, 28, 28), cnnY = torch.randint(0, 10, [128]);
        yield return ("conv-BN CNN, batch 128", () => BenchmarkModels.TrainStep(cnn, cnnOptimizer, cnnX, cnnY, null));

        var language = new LanguageModel(10_000, 256, 2);
        var languageOptimizer = SafeOptim.SGD(language.parameters(), 1.0);
        Tensor tokens = torch.randint(0, 10_000, [35, 20]), targets = torch.randint(0, 10_000, [35 * 20]);
        yield return ("LSTM 2×256 LM, 35×20", () =>
        {
            using var scope = torch.NewDisposeScope();
            languageOptimizer.zero_grad();
            nn.functional.cross_entropy(language.call(tokens), targets).backward();
            languageOptimizer.step();
        });
    }

    private static double MillisecondsPerStep(Action step, double seconds)
    {
        step();   // warm: first calls JIT kernels and fill caches
        int steps = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed.TotalSeconds < seconds)
        {
            step();
            steps++;
        }
        return clock.Elapsed.TotalMilliseconds / steps;
    }

    private static double Median(List<double> values)
    {
        values.Sort();
        return values[values.Count / 2];
    }

    /// <summary>Embedding → LSTM → Linear, the KJV sample's shape.</summary>
    private sealed class LanguageModel : nn.Module<Tensor, Tensor>
    {
        private readonly Embedding embed;
        private readonly LSTM lstm;
        private readonly Linear decoder;

        public LanguageModel(int vocabulary, int width, int layers) : base("lm")
        {
            embed = nn.Embedding(vocabulary, width);
            lstm = nn.LSTM(width, width, layers);
            decoder = nn.Linear(width, vocabulary);
            RegisterComponents();
        }

        public override Tensor forward(Tensor tokens)
        {
            var (output, _, _) = lstm.call(embed.call(tokens));
            return decoder.call(output.reshape(-1, output.shape[2]));
        }
    }
}
