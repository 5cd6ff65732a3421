using Pruning.Analysis;
using Pruning.Analysis.Amc;
using Pruning.Configuration;
using Pruning.Criteria;
using Pruning.Scheduling;
using Pruning.Selection;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Tests.Criteria;

/// <summary>
/// The two extension points, each written as a user would in under 40 lines, and each driven by the pruner, the
/// sensitivity scan and AMC (which all choose masks through the same session).
/// </summary>
[Collection(TorchCollection.Name)]
public class ExtensionPointTests
{
    /// <summary>A scorer: the later an input column, the more important (so the first columns go first), whatever the weight.</summary>
    private sealed class LeadingColumnsFirst : IPruningCriterion
    {
        public Tensor Score(string parameterName, Tensor weight) =>
            torch.arange(weight.shape[1], dtype: ScalarType.Float32).expand(weight.shape[0], -1).contiguous();
    }

    /// <summary>A policy: each row keeps its largest weights (the same count per row) and the kept ones are rescaled to the row's old L1 norm; it counts its updates in the checkpoint.</summary>
    private sealed class RowBalancedRescaled : MaskPolicy, IPrunerState
    {
        public int Updates { get; private set; }

        public override ComponentConfig Config => new("RowBalancedRescaled");

        public override void Choose(MaskPolicyContext context, IReadOnlyList<DueWeight> due)
        {
            Updates++;
            foreach (DueWeight d in due)
            {
                Tensor w = context.Model.get_parameter(d.Name)!;
                long columns = w.shape[1], pruned = Math.Min(columns - 1, (long)Math.Round(d.Target * columns));
                Tensor keep = w.abs().argsort(1, descending: true).argsort(1).lt(columns - pruned);
                Tensor norm = w.abs().sum(1, keepdim: true);
                Tensor kept = w.mul(keep);
                w.copy_(kept.mul(norm.div(kept.abs().sum(1, keepdim: true).clamp_min(1e-12))));
                keep.reshape(-1).data<bool>().CopyTo(d.Keep, 0);
                d.Target = (double)pruned / columns;
            }
        }

        public void SaveState(BinaryWriter writer) => writer.Write(Updates);

        public void LoadState(BinaryReader reader, IReadOnlyDictionary<string, Tensor> parameters) => Updates = reader.ReadInt32();
    }

    private static bool[] Zeros(nn.Module model, string name) => model.get_parameter(name)!.detach().eq(0).reshape(-1).data<bool>().ToArray();

    [Fact]
    public void A_scorer_of_our_own_drives_the_pruner_the_sensitivity_scan_and_AMC()
    {
        var model = TestModels.Mlp(21);
        using (var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5), Criterion = new LeadingColumnsFirst() }))
            pruner.Step();
        // fc1 is 32×16: exactly its first 8 columns are zero in every row.
        Zeros(model, "fc1.weight").Should().Equal(Enumerable.Range(0, 32 * 16).Select(i => i % 16 < 8));

        var fresh = TestModels.Mlp(22);
        var probed = new List<bool>();
        SensitivityScan.Run(fresh, m =>
        {
            bool[] zeros = Zeros(m, "fc2.weight");   // fc2 is 24×32; when it is probed at 25 %, columns 0–7 are zero
            if (zeros.Count(z => z) == 24 * 8) probed.Add(zeros.SequenceEqual(Enumerable.Range(0, 24 * 32).Select(i => i % 32 < 8)));
            return 1;
        }, new SensitivityOptions { Ratios = [0.25], Criterion = new LeadingColumnsFirst() });
        probed.Should().Equal(true);

        var episodes = new List<bool>();
        AmcSearch.Run(TestModels.Mlp(23), m =>
        {
            foreach (string name in new[] { "fc1.weight", "fc2.weight" })
            {
                long columns = m.get_parameter(name)!.shape[1];
                var zeros = Zeros(m, name).Select((z, i) => (z, Column: i % columns)).ToArray();
                // This scorer prunes leading columns first: no pruned weight sits right of a kept one.
                if (zeros.Any(p => p.z) && zeros.Any(p => !p.z))
                    episodes.Add(zeros.Where(p => p.z).Max(p => p.Column) <= zeros.Where(p => !p.z).Min(p => p.Column));
            }
            return 1;
        }, new AmcOptions { Budget = 0.6, Episodes = 3, WarmupEpisodes = 1, Hidden = 8, Criterion = new LeadingColumnsFirst() });
        episodes.Should().NotBeEmpty().And.OnlyContain(ok => ok);
    }

    [Fact]
    public void A_policy_of_our_own_drives_the_pruner_with_its_checkpoint_the_sensitivity_scan_and_AMC()
    {
        var model = TestModels.Mlp(24);
        var before = model.get_parameter("fc2.weight")!.detach().abs().sum(1).data<float>().ToArray();
        var policy = new RowBalancedRescaled();
        string path = Path.Combine(Path.GetTempPath(), $"policy-{Environment.ProcessId}.pruning");
        using (var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.75), Policy = policy }))
        {
            pruner.Step();
            pruner.Save(path);
        }
        Tensor w = model.get_parameter("fc2.weight")!.detach();
        w.eq(0).sum(1).data<long>().ToArray().Should().OnlyContain(n => n == 24, "every row of fc2 (32 columns) prunes exactly 24");
        w.abs().sum(1).data<float>().ToArray().Zip(before).Should().OnlyContain(p => Math.Abs(p.First - p.Second) < 1e-4 * p.Second, "kept weights carry each row's old L1 norm");
        var resumed = new RowBalancedRescaled();
        using (var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.75), Policy = resumed }))
            pruner.Load(path);
        resumed.Updates.Should().Be(1, "the policy's state came back from the checkpoint");
        File.Delete(path);

        var scanned = TestModels.Mlp(25);
        var original = scanned.get_parameter("fc1.weight")!.detach().clone();
        var rowsPruned = new List<long>();
        SensitivityScan.Run(scanned, m => { rowsPruned.Add(m.get_parameter("fc1.weight")!.detach().eq(0).sum().item<long>()); return 1; },
            new SensitivityOptions { Ratios = [0.5], Policy = new RowBalancedRescaled() });
        rowsPruned[1].Should().Be(32 * 8, "fc1 probed at 50 % by the policy: 8 of 16 in each of 32 rows");
        scanned.get_parameter("fc1.weight")!.detach().eq(original).all().item<bool>().Should().BeTrue("the scan puts back what the policy rewrote");

        var amcPolicy = new RowBalancedRescaled();
        AmcSearch.Run(TestModels.Mlp(26), m => 1, new AmcOptions { Budget = 0.6, Episodes = 3, WarmupEpisodes = 1, Hidden = 8, Policy = amcPolicy });
        amcPolicy.Updates.Should().Be(3, "one call per episode, all layers at once");
    }
}
