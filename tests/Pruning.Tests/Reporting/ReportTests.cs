using Pruning.Reporting;

namespace Pruning.Tests.Reporting;

public sealed class ReportTests
{
    private static readonly PruningReport Report = new(42,
    [
        new LayerReport("fc1.weight", [300, 784], 0.9, 23_520, 235_200, 0),
        new LayerReport("fc2.weight", [100, 300], 0.9, 3_000, 30_000, 0),
    ]);

    [Fact]
    public void Totals_AreSumsOverLayers()
    {
        Report.Nonzero.Should().Be(26_520);
        Report.Total.Should().Be(265_200);
        Report.Sparsity.Should().BeApproximately(0.9, 1e-12);
        Report.MaskedNonzero.Should().Be(0);
    }

    [Fact]
    public void ToString_IsATableWithATotalRow()
    {
        string[] lines = Report.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries);
        lines[0].Should().MatchRegex(@"^parameter\s+shape\s+target\s+sparsity\s+nnz\s+total$");
        lines[2].Should().MatchRegex(@"^fc1\.weight\s+300x784\s+90\.00%\s+90\.00%\s+23,520\s+235,200$");
        lines[^1].Should().MatchRegex(@"^total\s+90\.00%\s+26,520\s+265,200$");
    }

    [Fact]
    public void MaskUpdate_SumsChurn()
    {
        var update = new MaskUpdate(7, [new LayerMaskUpdate("a", 0.5, 5, 10, 3, 1), new LayerMaskUpdate("b", 0.5, 2, 4, 2, 0)]);
        update.NewlyPruned.Should().Be(5);
        update.Revived.Should().Be(1);
        update.Layers[0].Sparsity.Should().Be(0.5);
        update.ToString().Should().Be("step 7: a 50.00% (+3 −1), b 50.00% (+2 −0)");
    }

    [Fact]
    public void GlobalPlan_ShowsOneColumn()
    {
        var plan = new PruningPlan(["a", "b"], [(10, [0.25, 0.25]), (20, [0.5, 0.5])], Global: true);
        string[] lines = plan.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries);
        lines.Should().HaveCount(3);
        lines[0].Should().Contain("global target").And.NotContain(" a ");
        lines[2].Should().MatchRegex(@"^\s+20\s+50\.00%$");
    }
}
