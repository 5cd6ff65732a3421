using TorchSharp.Modules;

namespace Pruning.Export;

/// <summary>
/// A Linear or Conv2d copied out of TorchSharp as float arrays, into which the BatchNorm that follows it (if any) can be
/// folded. Both exporters build their layers from it, so they fold the same way.
/// </summary>
internal sealed class FoldableLayer
{
    private readonly string _name;
    private bool _folded;

    private FoldableLayer(string name, float[] weight, float[]? bias, int rows, ConvGeometry? conv)
    {
        _name = name;
        Weight = weight;
        Bias = bias;
        Rows = rows;
        Conv = conv;
    }

    /// <summary>The module's dotted name in the chain.</summary>
    public string Name => _name;

    /// <summary>Row-major weights: (out, in) for Linear, (out, in/groups, kh, kw) for Conv2d.</summary>
    public float[] Weight { get; }

    /// <summary>The bias, or null when the layer has none and no BatchNorm was folded.</summary>
    public float[]? Bias { get; private set; }

    /// <summary>Output features or channels.</summary>
    public int Rows { get; }

    /// <summary>Inputs per row: in_features, or in_channels/groups · kh · kw.</summary>
    public int Columns => Weight.Length / Rows;

    /// <summary>The convolution's geometry; null for Linear.</summary>
    public ConvGeometry? Conv { get; }

    public static FoldableLayer From(string name, Linear linear) =>
        new(name, SparseExport.Floats(linear.weight!), linear.bias is null ? null : SparseExport.Floats(linear.bias), (int)linear.weight!.shape[0], null);

    public static FoldableLayer From(string name, Conv2d conv)
    {
        if (conv.padding_mode != TorchSharp.PaddingModes.Zeros)
            throw new NotSupportedException($"Conv2d '{name}' pads with {conv.padding_mode}; only zero padding is supported.");
        long[] padding = conv.padding ?? throw new NotSupportedException($"Conv2d '{name}' uses symbolic padding ({conv.padding_type}); give it explicit padding.");
        var weight = conv.weight!;
        var geometry = new ConvGeometry((int)weight.shape[1] * (int)conv.groups, (int)conv.groups,
            ((int)conv.kernel_size[0], (int)conv.kernel_size[1]), ((int)conv.stride[0], (int)conv.stride[1]),
            ((int)padding[0], (int)padding[1]), ((int)conv.dilation[0], (int)conv.dilation[1]));
        return new(name, SparseExport.Floats(weight), conv.bias is null ? null : SparseExport.Floats(conv.bias), (int)weight.shape[0], geometry);
    }

    /// <summary>Folds y = γ·(x − μ)/√(σ² + ε) + β into the weights and bias: scaling a row keeps its zeros.</summary>
    public void Fold(BatchNorm bn, string bnName)
    {
        if (_folded) throw new NotSupportedException($"BatchNorm '{bnName}' follows another BatchNorm after '{_name}'; only one can be folded.");
        if (bn.num_features != Rows) throw new NotSupportedException($"BatchNorm '{bnName}' has {bn.num_features} features but '{_name}' has {Rows} outputs.");
        BatchNormValues values = BatchNormValues.From(bn, bnName);
        int perRow = Columns;
        float[] bias = Bias ?? new float[Rows];
        for (int r = 0; r < Rows; r++)
        {
            double scale = values.Gamma[r] / Math.Sqrt(values.Variance[r] + values.Epsilon);
            for (int k = 0; k < perRow; k++) Weight[r * perRow + k] = (float)(Weight[r * perRow + k] * scale);
            bias[r] = (float)((bias[r] - values.Mean[r]) * scale + values.Beta[r]);
        }
        Bias = bias;
        _folded = true;
    }
}
