using System.Globalization;
using System.Text;

namespace Pruning.Sparse.Tuning;

/// <summary>The tuned model and what was measured for each weighted layer.</summary>
public sealed record FormatTuningResult(SparseModel Model, IReadOnlyList<LayerFormatChoice> Choices)
{
    /// <summary>The model with every weighted layer in its fastest measured format.</summary>
    public SparseModel Model { get; init; } = Model;

    /// <summary>Per weighted layer, the candidates' times and the choice.</summary>
    public IReadOnlyList<LayerFormatChoice> Choices { get; init; } = Choices;

    /// <summary>A table: layer, each candidate's time, the choice.</summary>
    public override string ToString()
    {
        var text = new StringBuilder();
        foreach (LayerFormatChoice choice in Choices)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"layer {choice.Where}:");
            foreach (var (layer, ms) in choice.Options)
                text.AppendLine(CultureInfo.InvariantCulture, $"  {(layer == choice.Chosen ? "*" : " ")} {layer,-56} {ms * 1000,10:F1} µs");
        }
        return text.ToString();
    }
}
