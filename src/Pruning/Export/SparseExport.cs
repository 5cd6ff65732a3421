using Pruning.Sparse;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Export;

/// <summary>
/// Turns a pruned TorchSharp model into a <see cref="SparseModel"/> for standalone inference, and writes the
/// interchange file. The model must be a Sequential chain (nested Sequentials are flattened) of Linear, Conv2d
/// (groups 1, zero padding), BatchNorm1d/2d (folded into the Linear or Conv2d before it), ReLU, LeakyReLU, Tanh,
/// Sigmoid, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), Flatten, Dropout and Identity. Anything else is refused with its name.
/// Export after <see cref="GradualPruner.Strip"/> (or with the masks applied), so pruned weights are exact zeros.
/// </summary>
public static class SparseExport
{
    /// <summary>
    /// Builds the inference model. <paramref name="input"/> is one sample's shape, e.g. (1, 28, 28) or (784).
    /// <paramref name="format"/> chooses each weight's storage; <see cref="MatrixFormat.Auto"/> uses CSR only where it is
    /// sparse enough to be faster: at most <see cref="WeightMatrix.CsrMaxDensity"/> non-zero for Linear and strided
    /// Conv2d, at most <see cref="Conv2dLayer.DirectMaxDensity"/> for stride-1 Conv2d (run by direct sparse convolution).
    /// </summary>
    public static SparseModel ToSparseModel(nn.Module model, FeatureShape input, MatrixFormat format = MatrixFormat.Auto)
    {
        ArgumentNullException.ThrowIfNull(model);
        var layers = new List<SparseLayer>();
        Pending? pending = null;
        using var _ = torch.no_grad();
        foreach (var (name, module) in Chain(model, ""))
        {
            if (module is BatchNorm bn)
            {
                if (pending is null)
                    throw new NotSupportedException($"BatchNorm '{name}' does not follow a Linear or Conv2d, so it cannot be folded into one.");
                pending.Fold(bn, name);
                continue;
            }
            if (pending is not null) { layers.Add(pending.Build(format)); pending = null; }
            switch (module)
            {
                case Linear linear:
                    pending = new Pending(name, Floats(linear.weight!), linear.bias is null ? null : Floats(linear.bias), (int)linear.weight!.shape[0], null);
                    break;
                case Conv2d conv:
                    if (conv.groups != 1) throw new NotSupportedException($"Conv2d '{name}' has groups = {conv.groups}; only groups = 1 is supported.");
                    if (conv.padding_mode != PaddingModes.Zeros) throw new NotSupportedException($"Conv2d '{name}' pads with {conv.padding_mode}; only zero padding is supported.");
                    long[] padding = conv.padding ?? throw new NotSupportedException($"Conv2d '{name}' uses symbolic padding ({conv.padding_type}); give it explicit padding.");
                    pending = new Pending(name, Floats(conv.weight!), conv.bias is null ? null : Floats(conv.bias), (int)conv.weight!.shape[0],
                        ((int)conv.weight.shape[1], ((int)conv.kernel_size[0], (int)conv.kernel_size[1]), ((int)conv.stride[0], (int)conv.stride[1]),
                         ((int)padding[0], (int)padding[1]), ((int)conv.dilation[0], (int)conv.dilation[1])));
                    break;
                case ReLU: layers.Add(new ActivationLayer(ActivationKind.ReLU)); break;
                case LeakyReLU leaky: layers.Add(new ActivationLayer(ActivationKind.LeakyReLU, (float)leaky.negative_slope)); break;
                case Tanh: layers.Add(new ActivationLayer(ActivationKind.Tanh)); break;
                case Sigmoid: layers.Add(new ActivationLayer(ActivationKind.Sigmoid)); break;
                case MaxPool2d max:
                    if (max.ceil_mode) throw new NotSupportedException($"MaxPool2d '{name}' uses ceil_mode; only floor mode is supported.");
                    if (max.dilation is { } d && d.Any(v => v != 1)) throw new NotSupportedException($"MaxPool2d '{name}' is dilated; only dilation 1 is supported.");
                    layers.Add(new Pool2dLayer(PoolKind.Max, Pair(max.kernel_size), Pair(max.stride ?? max.kernel_size), Pair(max.padding, 0)));
                    break;
                case AvgPool2d avg:
                    if (avg.ceil_mode) throw new NotSupportedException($"AvgPool2d '{name}' uses ceil_mode; only floor mode is supported.");
                    if (avg.divisor_override is not null) throw new NotSupportedException($"AvgPool2d '{name}' overrides the divisor; that is not supported.");
                    layers.Add(new Pool2dLayer(PoolKind.Average, Pair(avg.kernel_size), Pair(avg.stride ?? avg.kernel_size), Pair(avg.padding, 0), avg.count_include_pad));
                    break;
                case AdaptiveAvgPool2d adaptive:
                    if (adaptive.output_size.Any(v => v != 1))
                        throw new NotSupportedException($"AdaptiveAvgPool2d '{name}' has output size [{string.Join(", ", adaptive.output_size)}]; only 1 (global average pooling) is supported.");
                    layers.Add(new GlobalAveragePoolLayer());
                    break;
                case Flatten flatten:
                    if (flatten.start_dim != 1 || flatten.end_dim != -1) throw new NotSupportedException($"Flatten '{name}' flattens dims {flatten.start_dim}..{flatten.end_dim}; only 1..-1 is supported.");
                    layers.Add(new FlattenLayer());
                    break;
                case Dropout or Dropout2d or Identity:
                    break;
                default:
                    throw new NotSupportedException($"Module '{name}' ({module.GetType().Name}) cannot be exported; supported: Linear, Conv2d, BatchNorm1d/2d after them, ReLU, LeakyReLU, Tanh, Sigmoid, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), Flatten, Dropout, Identity.");
            }
        }
        if (pending is not null) layers.Add(pending.Build(format));
        return new SparseModel(input, layers);
    }

    /// <summary>Builds the inference model and saves it to <paramref name="path"/> (see <see cref="SparseModelFile"/>).</summary>
    public static SparseModel Save(nn.Module model, FeatureShape input, string path, MatrixFormat format = MatrixFormat.Auto)
    {
        SparseModel sparse = ToSparseModel(model, input, format);
        SparseModelFile.Save(sparse, path);
        return sparse;
    }

    /// <summary>
    /// Writes every parameter and buffer of <paramref name="model"/> to a safetensors file; weights with at least two
    /// dimensions go in compressed-tensors' sparse-bitmask layout (see <see cref="SafeTensorsBitmask"/>).
    /// </summary>
    public static void SaveSafeTensors(nn.Module model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var _ = torch.no_grad();
        var tensors = model.named_parameters().Select(p => (p.name, t: (Tensor)p.parameter, weight: p.parameter.dim() >= 2))
            .Concat(model.named_buffers().Where(b => b.buffer.is_floating_point()).Select(b => (b.name, t: b.buffer, weight: false)))
            .Select(e => new NamedTensor(e.name, e.t.shape, Floats(e.t), e.weight));
        SafeTensorsBitmask.Write(path, tensors);
    }

    /// <summary>The weight names of the Linear and Conv2d layers, in the order their layers appear in the exported model.</summary>
    internal static IReadOnlyList<string> WeightNames(nn.Module model) =>
        Chain(model, "").Where(c => c.Module is Linear or Conv2d).Select(c => $"{c.Name}.weight").ToArray();

    private static IEnumerable<(string Name, nn.Module Module)> Chain(nn.Module module, string prefix)
    {
        if (module is not Sequential)
            throw new NotSupportedException($"Only Sequential models can be exported; '{(prefix.Length == 0 ? "the model" : prefix)}' is a {module.GetType().Name}.");
        foreach (var (name, child) in module.named_children())
        {
            string path = prefix.Length == 0 ? name : $"{prefix}.{name}";
            if (child is Sequential)
                foreach (var inner in Chain(child, path)) yield return inner;
            else yield return (path, child);
        }
    }

    private static (int, int) Pair(long[]? values, int fallback = 1) =>
        values is null ? (fallback, fallback) : values.Length == 1 ? ((int)values[0], (int)values[0]) : ((int)values[0], (int)values[1]);

    internal static float[] Floats(Tensor t)
    {
        using var cpu = t.detach().cpu().to_type(ScalarType.Float32).contiguous();
        return cpu.data<float>().ToArray();
    }

    /// <summary>A Linear or Conv2d whose BatchNorm (if any) has not been seen yet.</summary>
    private sealed class Pending(string name, float[] weight, float[]? bias, int rows,
        (int InChannels, (int, int) Kernel, (int, int) Stride, (int, int) Padding, (int, int) Dilation)? conv)
    {
        private float[]? _bias = bias;
        private bool _folded;

        /// <summary>Folds y = γ·(x − μ)/√(σ² + ε) + β into the weights and bias: scaling a row keeps its zeros.</summary>
        public void Fold(BatchNorm bn, string bnName)
        {
            if (_folded) throw new NotSupportedException($"BatchNorm '{bnName}' follows another BatchNorm after '{name}'; only one can be folded.");
            if (bn.num_features != rows) throw new NotSupportedException($"BatchNorm '{bnName}' has {bn.num_features} features but '{name}' has {rows} outputs.");
            if (bn.running_mean is null || bn.running_var is null)
                throw new NotSupportedException($"BatchNorm '{bnName}' does not track running statistics, so it cannot be folded for inference.");
            float[] mean = Floats(bn.running_mean), variance = Floats(bn.running_var);
            float[]? gamma = bn.weight is null ? null : Floats(bn.weight);
            float[]? beta = bn.bias is null ? null : Floats(bn.bias);
            int perRow = weight.Length / rows;
            _bias ??= new float[rows];
            for (int r = 0; r < rows; r++)
            {
                double scale = (gamma?[r] ?? 1.0) / Math.Sqrt(variance[r] + bn.eps);
                for (int k = 0; k < perRow; k++) weight[r * perRow + k] = (float)(weight[r * perRow + k] * scale);
                _bias[r] = (float)((_bias[r] - mean[r]) * scale + (beta?[r] ?? 0.0));
            }
            _folded = true;
        }

        public SparseLayer Build(MatrixFormat format)
        {
            return conv is { } c
                ? Conv2dLayer.FromDense(weight, rows, _bias, c.InChannels, c.Kernel, c.Stride, c.Padding, c.Dilation, format)
                : new LinearLayer(WeightMatrix.FromDense(weight, rows, weight.Length / rows, format), _bias);
        }
    }
}
