using System.Globalization;
using System.Text;

namespace Pruning.Analysis;

/// <summary>The outcome of <see cref="NetAdapt.Run"/> or of <see cref="ChannelNetAdapt"/>'s Run (either cost: a latency table or MACs).</summary>
/// <param name="Iterations">The kept proposal of every iteration.</param>
/// <param name="Sparsities">Per weight, its final sparsity (for channel NetAdapt, the fraction of its channels
/// removed): ready for <see cref="ParameterOverride.FinalSparsities"/>.</param>
/// <param name="Channels">For channel NetAdapt, the channels each layer keeps; null otherwise.</param>
/// <param name="DenseCost">The estimate for the unpruned model: a latency from the table, or MACs for channel NetAdapt under a FLOPs budget.</param>
/// <param name="FinalCost">The estimate after the last iteration, in the same unit.</param>
/// <param name="Budget">The cost aimed for, in the same unit.</param>
/// <param name="BudgetMet">Whether the estimate reached the budget.</param>
public sealed record NetAdaptResult(
    IReadOnlyList<NetAdaptIteration> Iterations,
    IReadOnlyDictionary<string, double> Sparsities,
    IReadOnlyDictionary<string, long>? Channels,
    Cost DenseCost,
    Cost FinalCost,
    Cost Budget,
    bool BudgetMet)
{
    /// <summary>The iteration table.</summary>
    public override string ToString()
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"dense {DenseCost}, budget {Budget}");
        text.AppendLine($"iter  {"layer",-20}  {(Channels is null ? "sparsity" : "channels"),8}  {(DenseCost.Unit == CostUnit.Milliseconds ? "latency" : "cost"),14}      metric  proposals");
        foreach (var it in Iterations)
        {
            string cut = it.Channels is long c ? c.ToString(CultureInfo.InvariantCulture) : it.Sparsity.ToString("P1", CultureInfo.InvariantCulture);
            text.AppendLine(CultureInfo.InvariantCulture, $"{it.Iteration,4}  {it.Layer,-20}  {cut,8}  {it.Cost,14}  {it.Metric,10:G5}  {it.ProposalsTried,9}");
        }
        text.Append(BudgetMet ? "budget met" : "budget NOT met: no layer can be pruned further within the measured candidates");
        return text.ToString();
    }
}
