namespace Pruning.Export;

/// <summary>How <see cref="OnnxExport"/> writes a model.</summary>
public sealed record OnnxExportOptions
{
    /// <summary>The lowest ONNX opset written (default).</summary>
    public const int MinOpset = 13;

    /// <summary>The highest ONNX opset written.</summary>
    public const int MaxOpset = 21;

    /// <summary>The default-domain opset the file declares, <see cref="MinOpset"/>–<see cref="MaxOpset"/>; 17 by default.</summary>
    public int Opset { get; init; } = 17;

    /// <summary>
    /// Fold each BatchNorm that directly follows a Linear or Conv2d into its weights and bias (true, the default: what
    /// an inference runtime would do itself), or write BatchNormalization nodes (false). A BatchNorm that follows
    /// anything else is always written as a node.
    /// </summary>
    public bool FoldBatchNorm { get; init; } = true;

    /// <summary>The graph input's name; its first dimension is the symbolic batch size "batch".</summary>
    public string InputName { get; init; } = "input";

    /// <summary>The graph output's name.</summary>
    public string OutputName { get; init; } = "output";

    internal void Validate()
    {
        if (Opset is < MinOpset or > MaxOpset)
            throw new ArgumentOutOfRangeException(nameof(Opset), Opset, $"The opset must be between {MinOpset} and {MaxOpset}.");
        if (string.IsNullOrWhiteSpace(InputName)) throw new ArgumentException("The input name is empty.", nameof(InputName));
        if (string.IsNullOrWhiteSpace(OutputName)) throw new ArgumentException("The output name is empty.", nameof(OutputName));
        if (InputName == OutputName) throw new ArgumentException($"The input and output are both named '{InputName}'.", nameof(OutputName));
    }
}
