using Pruning;
using Pruning.Analysis;
using Pruning.Analysis.Amc;
using Pruning.Grouping;
using Pruning.Samples;
using Pruning.Selection;
using Pruning.Structure;
using Pruning.Targets;
using TorchSharp.Modules;

/// <summary>Per-layer ratios for one budget, by each method (uniform, sensitivity, NetAdapt, global magnitude, AMC).</summary>
internal sealed class Methods(Sequential dense, FashionMnist train, Func<TorchSharp.torch.nn.Module, double> validate, bool quick, int episodes, int warmup)
{
    public static readonly string[] Producers = ["conv1.weight", "conv2.weight", "conv3.weight"];
    public static readonly string[] Weights = ["conv1.weight", "conv2.weight", "conv3.weight", "fc.weight"];

    /// <summary>Fine mode's resource: the searched weights' non-zeros kept, as a fraction.</summary>
    public static double KeptNonZeros(IReadOnlyDictionary<string, double> ratios, Sequential model)
    {
        double total = Weights.Sum(w => (double)model.get_parameter(w)!.numel());
        return Weights.Sum(w => model.get_parameter(w)!.numel() - MaskSelector.PrunedCount(ratios.GetValueOrDefault(w), model.get_parameter(w)!.numel())) / total;
    }

    /// <summary>Channel mode's resource: MACs kept, as a fraction, when each producer keeps C − round(r·C) channels.</summary>
    public static double KeptMacs(IReadOnlyDictionary<string, double> ratios, Sequential model) =>
        Cnn.Graph(model).Macs(Kept(ratios, model)) / (double)Cnn.Macs(model);

    private static Dictionary<string, long> Kept(IReadOnlyDictionary<string, double> ratios, Sequential model) =>
        ratios.ToDictionary(r => r.Key, r =>
        {
            long channels = model.get_parameter(r.Key)!.shape[0];
            return channels - Math.Min(MaskSelector.PrunedCount(r.Value, channels), channels - 1);
        });

    public IReadOnlyDictionary<string, double> Uniform(AmcMode mode, double budget)
    {
        if (mode == AmcMode.Fine) return Weights.ToDictionary(w => w, _ => 1 - budget);
        // The smallest common channel ratio that meets the MAC budget.
        return Smallest(r => Producers.ToDictionary(p => p, _ => r), budget);
    }

    public IReadOnlyDictionary<string, double> Sensitivity(AmcMode mode, double budget)
    {
        var options = mode == AmcMode.Fine
            ? new SensitivityOptions { Ratios = quick ? [0.5, 0.8, 0.9, 0.95] : [0.3, 0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98] }
            : new SensitivityOptions
            {
                Ratios = quick ? [0.25, 0.5, 0.75] : [0.125, 0.25, 0.375, 0.5, 0.625, 0.75],
                Granularity = PruningGranularity.OutputChannels(),
                Targets = PruningTargets.Default.Include(Producers),
            };
        var scan = SensitivityScan.Run(Cnn.Copy(dense), validate, options);
        if (mode == AmcMode.Fine) return scan.SparsitiesForTotal(1 - budget);
        // The smallest accuracy drop whose per-layer ratios meet the MAC budget.
        double low = 0, high = 1;
        for (int i = 0; i < 40; i++)
        {
            double mid = (low + high) / 2;
            if (KeptMacs(scan.SparsitiesForMaxDrop(mid), dense) <= budget) high = mid; else low = mid;
        }
        return scan.SparsitiesForMaxDrop(high);
    }

    public IReadOnlyDictionary<string, double> NetAdaptRatios(AmcMode mode, double budget, int seed)
    {
        var model = Cnn.Copy(dense);
        double Evaluate(NetAdaptProposal proposal)
        {
            Cnn.Train(model, train, quick ? 5 : 30, 5e-4, null, seed);   // short-term fine-tune, re-masked below
            proposal.Remask();
            return validate(model);
        }
        var options = new NetAdaptOptions { TargetCostFraction = budget, ReductionPerIteration = mode == AmcMode.Fine ? 0.1 : 0.05 };
        if (mode == AmcMode.Channel)
            return ChannelNetAdapt.Run(model, Cnn.Graph(model), Evaluate, options).Sparsities
                .Where(s => Producers.Contains(s.Key)).ToDictionary(s => s.Key, s => s.Value);
        // Fine mode: a cost table of non-zeros per layer and sparsity, so NetAdapt's "latency" is the non-zero count.
        var layers = Weights.Select(w => new LatencyLayer(w, model.get_parameter(w)!.shape.Skip(1).Aggregate(1L, (a, b) => a * b), model.get_parameter(w)!.shape[0])).ToList();
        double[] grid = [.. Enumerable.Range(0, 20).Select(i => i * 0.05), 0.97, 0.99];
        var table = new LatencyTable(layers, 1, layers.SelectMany(l => grid.Select(s => KeyValuePair.Create(l.At(s), (double)(l.InChannels * l.OutChannels - MaskSelector.PrunedCount(s, l.InChannels * l.OutChannels))))));
        return NetAdapt.Run(model, table, Evaluate, options).Sparsities;
    }

    public IReadOnlyDictionary<string, double> Global(AmcMode mode, double budget)
    {
        if (mode == AmcMode.Fine) return Weights.ToDictionary(w => w, _ => 1 - budget); // the ranking itself runs during training
        // One ranking of all filters by L1 norm; the smallest global fraction that meets the MAC budget.
        var layers = Producers.Select(p => new SelectionLayer(p, Abs(dense.get_parameter(p)!), dense.get_parameter(p)!.shape)).ToList();
        IReadOnlyDictionary<string, double> At(double s)
        {
            var selected = MaskSelector.Select(layers.Select(l => l with { Sparsity = s }).ToList(), PruningGranularity.OutputChannels(), PruningScope.Global);
            return selected.ToDictionary(m => m.Name, m => m.Sparsity);
        }
        double low = 0, high = 0.95;
        for (int i = 0; i < 40; i++)
        {
            double mid = (low + high) / 2;
            if (KeptMacs(At(mid), dense) <= budget) high = mid; else low = mid;
        }
        return At(high);
    }

    public AmcResult Amc(AmcMode mode, double budget, int seed) =>
        AmcSearch.Run(Cnn.Copy(dense), validate, new AmcOptions
        {
            Episodes = episodes,
            WarmupEpisodes = warmup,
            Mode = mode,
            Resource = mode == AmcMode.Fine ? AmcResource.NonZeros : AmcResource.Flops,
            Budget = budget,
            InputShape = Cnn.Input,
            Targets = PruningTargets.Default.Include(Weights),
            Seed = seed,
        });

    private IReadOnlyDictionary<string, double> Smallest(Func<double, IReadOnlyDictionary<string, double>> ratios, double budget)
    {
        double low = 0, high = 0.95;
        for (int i = 0; i < 40; i++)
        {
            double mid = (low + high) / 2;
            if (KeptMacs(ratios(mid), dense) <= budget) high = mid; else low = mid;
        }
        return ratios(high);
    }

    private static float[] Abs(TorchSharp.torch.Tensor weight) => weight.abs().to(TorchSharp.torch.ScalarType.Float32).contiguous().data<float>().ToArray();
}
