using Google.Protobuf;
using Onnx;
using Pruning.Interop;
using Pruning.Sparse.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Export;

/// <summary>
/// Writes a pruned TorchSharp model as an ONNX file for ONNX Runtime and other ONNX tools: dense weights with the
/// pruned zeros in place, or the smaller model <see cref="Structure.ChannelGraph.ShrinkInPlace"/> leaves after channel
/// pruning (which any dense runtime runs faster). The model, a Sequential chain (with <see cref="Structure.Residual"/>
/// blocks or not) or your own Module classes, is traced once as <see cref="SparseExport"/> does (its adds become Add
/// nodes and its channel concatenations Concat nodes), of Linear, Conv2d (any groups, zero padding), BatchNorm1d/2d,
/// ReLU, ReLU6, LeakyReLU, ELU, Tanh, Sigmoid, SiLU, Hardswish, Hardsigmoid, Softmax, LogSoftmax, MaxPool2d, AvgPool2d,
/// AdaptiveAvgPool2d(1), Flatten, Dropout and Identity; anything else is refused with its name. The graph's batch dimension is symbolic. Export after <see cref="GradualPruner.Strip"/>
/// (or with the masks applied) so pruned weights are exact zeros; the model is read, never changed.
/// </summary>
public static class OnnxExport
{
    /// <summary>Writes the ONNX file. <paramref name="input"/> is one sample's shape, e.g. (1, 28, 28) or (784).</summary>
    public static void Save(nn.Module model, FeatureShape input, string path, OnnxExportOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        Sparse.Serialization.FileFrame.Save(ToBytes(model, input, options), path);
    }

    /// <summary>
    /// Writes a transformer language model (as <see cref="SparseExport.ToTransformerModel"/> builds it, checked against its module) as
    /// an ONNX file: int64 tokens [batch, steps] in (<see cref="OnnxExportOptions.InputName"/>), logits
    /// [batch, steps, vocabulary] out, both dimensions symbolic; causal attention over the whole input (no cache).
    /// Needs opset 17 (LayerNormalization).
    /// </summary>
    public static void Save(Sparse.Sequences.TransformerModel model, string path, OnnxExportOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        Sparse.Serialization.FileFrame.Save(ToBytes(model, options), path);
    }

    /// <summary>The transformer's ONNX file bytes (see <see cref="Save(Sparse.Sequences.TransformerModel, string, OnnxExportOptions?)"/>).</summary>
    public static byte[] ToBytes(Sparse.Sequences.TransformerModel model, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= new OnnxExportOptions();
        options.Validate();
        return TransformerOnnx.Build(model, options).ToByteArray();
    }

    /// <summary>The ONNX file's bytes (a serialized ModelProto), e.g. for <c>new InferenceSession(bytes)</c>.</summary>
    public static byte[] ToBytes(nn.Module model, FeatureShape input, OnnxExportOptions? options = null)
    {
        TorchHealth.EnsureOnFirstUse();
        ArgumentNullException.ThrowIfNull(model);
        options ??= new OnnxExportOptions();
        options.Validate();
        using var _ = torch.no_grad();
        var graph = new GraphBuilder(options, input);
        Emit(graph, SparseExport.Modules(model, input), options);
        return graph.Finish(model.GetType().Name).ToByteArray();
    }

    /// <summary>Adds a chain's nodes; a residual block adds its branches from the same input and an Add.</summary>
    private static void Emit(GraphBuilder graph, IEnumerable<(string Name, nn.Module Module)> chain, OnnxExportOptions options)
    {
        FoldableLayer? pending = null;
        foreach (var (name, module) in chain)
        {
            if (module is BatchNorm bn && pending is not null && options.FoldBatchNorm)
            {
                pending.Fold(bn, name);
                continue;
            }
            if (pending is not null) { graph.Weighted(pending); pending = null; }
            switch (module)
            {
                case Linear linear: pending = FoldableLayer.From(name, linear); break;
                case Conv2d conv: pending = FoldableLayer.From(name, conv); break;
                case BatchNorm norm: graph.BatchNorm(name, norm); break;
                case Structure.TracedBranches branches:
                {
                    var start = graph.Position;
                    var results = new List<string>();
                    foreach (var branch in branches.Branches)
                    {
                        graph.Position = start;
                        Emit(graph, branch, options);
                        results.Add(graph.Position.Tensor);
                    }
                    if (branches.How == Structure.TracedBranches.Combine.Add) graph.Add(name, results[0]);
                    else if (branches.How == Structure.TracedBranches.Combine.Scale) graph.Scale(name, results[0]);
                    else graph.Concat(name, results);
                    break;
                }
                default:
                    if (Structure.ModuleHandlers.For(module) is not { } handler || !handler.ToOnnx(module, name, new OnnxLowering(graph)))
                        graph.Other(name, module);
                    break;
            }
        }
        if (pending is not null) graph.Weighted(pending);
    }

    /// <summary>Builds the graph node by node, tracking the current tensor's name and rank.</summary>
    internal sealed class GraphBuilder
    {
        private readonly OnnxExportOptions _options;
        private readonly GraphProto _graph = new() { Name = "pruned" };
        private readonly HashSet<string> _names = [];
        private readonly HashSet<string> _nodeNames = [];   // ONNX Runtime refuses two nodes of one name (a module called twice)
        private string _current;
        private int _rank;

        public GraphBuilder(OnnxExportOptions options, FeatureShape input)
        {
            _options = options;
            _current = Unique(options.InputName);
            _names.Add(options.OutputName);
            long[] dims = input.IsVector ? [input.Channels] : [input.Channels, input.Height, input.Width];
            _rank = dims.Length + 1;
            _graph.Input.Add(Value(options.InputName, dims));
        }

        /// <summary>The current tensor's name and rank (a residual block's branches both start from it).</summary>
        public (string Tensor, int Rank) Position
        {
            get => (_current, _rank);
            set => (_current, _rank) = value;
        }

        /// <summary>current = <paramref name="other"/> + current: the residual sum.</summary>
        public void Add(string name, string other) => Node("Add", name, [other, _current]);

        /// <summary>current = <paramref name="scaled"/> · current, the per-channel factors ([N, C, 1, 1]) broadcast over height and width.</summary>
        public void Scale(string name, string scaled)
        {
            if (_rank != 4)
                throw new NotSupportedException($"'{name}' scales by factors of rank {_rank}; ONNX export needs them as [N, C, 1, 1] (compute the excitation with 1×1 convolutions).");
            Node("Mul", name, [scaled, _current]);
        }

        /// <summary>current = the <paramref name="parts"/> laid side by side along dimension 1.</summary>
        public void Concat(string name, IReadOnlyList<string> parts) => Node("Concat", name, [.. parts], Int("axis", 1));

        /// <summary>Linear as Gemm (on a batch of vectors) or MatMul + Add (on higher ranks); Conv2d as Conv.</summary>
        public void Weighted(FoldableLayer layer)
        {
            if (layer.Conv is { } c)
            {
                if (_rank != 4) throw new NotSupportedException($"Conv2d '{layer.Name}' receives a rank-{_rank} tensor; a Conv2d needs (batch, channels, height, width).");
                string w = Initializer($"{layer.Name}.weight", layer.Weight, [layer.Rows, c.InChannels / c.Groups, c.Kernel.H, c.Kernel.W]);
                List<string> inputs = [_current, w];
                if (layer.Bias is { } b) inputs.Add(Initializer($"{layer.Name}.bias", b, [layer.Rows]));
                Node("Conv", layer.Name, inputs,
                    Ints("kernel_shape", c.Kernel.H, c.Kernel.W), Ints("strides", c.Stride.H, c.Stride.W),
                    Ints("pads", c.Padding.H, c.Padding.W, c.Padding.H, c.Padding.W), Ints("dilations", c.Dilation.H, c.Dilation.W),
                    Int("group", c.Groups));
                return;
            }
            if (_rank == 2)
            {
                string w = Initializer($"{layer.Name}.weight", layer.Weight, [layer.Rows, layer.Columns]);
                List<string> inputs = [_current, w];
                if (layer.Bias is { } b) inputs.Add(Initializer($"{layer.Name}.bias", b, [layer.Rows]));
                Node("Gemm", layer.Name, inputs, Int("transB", 1));
                return;
            }
            // y = x·Wᵀ on the last dimension, as torch's linear does for any rank.
            string wt = Initializer($"{layer.Name}.weight_t", Transposed(layer.Weight, layer.Rows, layer.Columns), [layer.Columns, layer.Rows]);
            Node("MatMul", layer.Bias is null ? layer.Name : $"{layer.Name}.matmul", [_current, wt]);
            if (layer.Bias is { } bias) Node("Add", layer.Name, [_current, Initializer($"{layer.Name}.bias", bias, [layer.Rows])]);
        }

        public void BatchNorm(string name, BatchNorm bn)
        {
            if (_rank < 2) throw new NotSupportedException($"BatchNorm '{name}' receives a rank-{_rank} tensor.");
            BatchNormValues v = BatchNormValues.From(bn, name);
            long n = bn.num_features;
            Node("BatchNormalization", name,
                [_current, Initializer($"{name}.weight", v.Gamma, [n]), Initializer($"{name}.bias", v.Beta, [n]),
                 Initializer($"{name}.running_mean", v.Mean, [n]), Initializer($"{name}.running_var", v.Variance, [n])],
                Float("epsilon", (float)v.Epsilon));
        }

        public void Other(string name, nn.Module module)
        {
            switch (module)
            {
                case ReLU: Node("Relu", name, [_current]); break;
                case ReLU6:
                    Node("Clip", name, [_current, Initializer($"{name}.min", [0f], []), Initializer($"{name}.max", [6f], [])]);
                    break;
                case LeakyReLU leaky: Node("LeakyRelu", name, [_current], Float("alpha", (float)leaky.negative_slope)); break;
                case ELU elu: Node("Elu", name, [_current], Float("alpha", (float)elu.alpha)); break;
                case Tanh: Node("Tanh", name, [_current]); break;
                case Sigmoid: Node("Sigmoid", name, [_current]); break;
                case Hardsigmoid: Node("HardSigmoid", name, [_current], Float("alpha", 1f / 6), Float("beta", 0.5f)); break;
                case Hardswish:
                    if (_options.Opset < 14) throw new NotSupportedException($"Hardswish '{name}' needs opset 14 or later (HardSwish).");
                    Node("HardSwish", name, [_current]);
                    break;
                case SiLU:
                {
                    string x = _current;
                    Node("Sigmoid", $"{name}.sigmoid", [x]);
                    Node("Mul", name, [x, _current]);
                    break;
                }
                case Softmax softmax: Node("Softmax", name, [_current], Int("axis", Axis(name, softmax.dim))); break;
                case LogSoftmax logSoftmax: Node("LogSoftmax", name, [_current], Int("axis", Axis(name, logSoftmax.dim))); break;
                case MaxPool2d max:
                {
                    RequireImage(name);
                    (long kh, long kw) = Pair(max.kernel_size, 1);
                    (long sh, long sw) = max.stride is null ? (kh, kw) : Pair(max.stride, 1);
                    (long ph, long pw) = Pair(max.padding, 0);
                    (long dh, long dw) = Pair(max.dilation, 1);
                    Node("MaxPool", name, [_current], Ints("kernel_shape", kh, kw), Ints("strides", sh, sw),
                        Ints("pads", ph, pw, ph, pw), Ints("dilations", dh, dw), Int("ceil_mode", max.ceil_mode ? 1 : 0));
                    break;
                }
                case AvgPool2d avg:
                {
                    RequireImage(name);
                    if (avg.divisor_override is not null) throw new NotSupportedException($"AvgPool2d '{name}' overrides the divisor; ONNX's AveragePool cannot.");
                    (long kh, long kw) = Pair(avg.kernel_size, 1);
                    (long sh, long sw) = avg.stride is null ? (kh, kw) : Pair(avg.stride, 1);
                    (long ph, long pw) = Pair(avg.padding, 0);
                    Node("AveragePool", name, [_current], Ints("kernel_shape", kh, kw), Ints("strides", sh, sw),
                        Ints("pads", ph, pw, ph, pw), Int("ceil_mode", avg.ceil_mode ? 1 : 0), Int("count_include_pad", avg.count_include_pad ? 1 : 0));
                    break;
                }
                case AdaptiveAvgPool2d adaptive:
                    RequireImage(name);
                    if (adaptive.output_size.Any(v => v != 1))
                        throw new NotSupportedException($"AdaptiveAvgPool2d '{name}' has output size [{string.Join(", ", adaptive.output_size)}]; only 1 (global average pooling) is supported.");
                    Node("GlobalAveragePool", name, [_current]);
                    break;
                case Flatten flatten:
                    if (flatten.start_dim != 1 || (flatten.end_dim != -1 && flatten.end_dim != _rank - 1))
                        throw new NotSupportedException($"Flatten '{name}' flattens dims {flatten.start_dim}..{flatten.end_dim}; only 1..-1 is supported.");
                    Node("Flatten", name, [_current], Int("axis", 1));
                    _rank = 2;
                    break;
                case Dropout or Dropout2d or Identity:
                    break;
                default:
                    throw new NotSupportedException($"Module '{name}' ({module.GetType().Name}) cannot be exported to ONNX; supported: Linear, Conv2d, BatchNorm1d/2d, ReLU, ReLU6, LeakyReLU, ELU, Tanh, Sigmoid, SiLU, Hardswish, Hardsigmoid, Softmax, LogSoftmax, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), Flatten, Dropout, Identity.");
            }
        }

        public ModelProto Finish(string modelType)
        {
            if (_graph.Node.Count == 0) Node("Identity", "identity", [_current]);
            NodeProto last = _graph.Node[^1];
            last.Output[0] = _options.OutputName;
            _graph.Output.Add(new ValueInfoProto
            {
                Name = _options.OutputName,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float } },
            });
            return Model(_graph, _options.Opset, modelType);
        }

        /// <summary>The file around <paramref name="graph"/>: the IR version of the opset, the producer, the default-domain opset.</summary>
        internal static ModelProto Model(GraphProto graph, int opset, string modelType)
        {
            var model = new ModelProto
            {
                IrVersion = IrVersion(opset),
                ProducerName = "Pruning",
                ProducerVersion = typeof(OnnxExport).Assembly.GetName().Version?.ToString() ?? "",
                DocString = $"{modelType} exported by Pruning.Export.OnnxExport",
                Graph = graph,
            };
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
            return model;
        }

        /// <summary>[cols, rows] from row-major [rows, cols]: a Linear's weight for MatMul on the last dimension.</summary>
        internal static float[] Transposed(float[] w, int rows, int cols)
        {
            var transposed = new float[w.Length];
            for (int r = 0; r < rows; r++)
                for (int k = 0; k < cols; k++) transposed[(long)k * rows + r] = w[(long)r * cols + k];
            return transposed;
        }

        /// <summary>The IR version released with the opset (ONNX 1.8 → opset 13, IR 7; 1.16 → opset 21, IR 10).</summary>
        internal static long IrVersion(int opset) => opset switch { 13 => 7, <= 18 => 8, <= 20 => 9, _ => 10 };

        private void Node(string op, string name, IEnumerable<string> inputs, params AttributeProto[] attributes)
        {
            string unique = name;
            for (int i = 1; !_nodeNames.Add(unique); i++) unique = $"{name}_{i}";
            var node = new NodeProto { OpType = op, Name = unique };
            node.Input.AddRange(inputs);
            _current = Unique(name);
            node.Output.Add(_current);
            node.Attribute.AddRange(attributes);
            _graph.Node.Add(node);
        }

        private string Initializer(string name, float[] values, long[] dims)
        {
            TensorProto tensor = FloatTensor(Unique(name), values, dims);
            _graph.Initializer.Add(tensor);
            return tensor.Name;
        }

        /// <summary>A float32 initializer (little-endian raw data, as ONNX stores it on any machine).</summary>
        internal static TensorProto FloatTensor(string name, float[] values, long[] dims)
        {
            var tensor = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
            tensor.Dims.AddRange(dims);
            var bytes = new byte[values.Length * sizeof(float)];
            for (int i = 0; i < values.Length; i++)
                System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * sizeof(float)), values[i]);
            tensor.RawData = ByteString.CopyFrom(bytes);
            return tensor;
        }

        /// <summary>An initializer holding <paramref name="values"/> of shape <paramref name="dims"/>; returns its (unique) name.</summary>
        public string Constant(string name, float[] values, long[] dims) => Initializer(name, values, dims);

        /// <summary>A node of a handler's lowering: its output becomes the current tensor, of rank <paramref name="rank"/> (null: unchanged).</summary>
        public void Custom(string op, string name, IReadOnlyList<string> inputs, IReadOnlyDictionary<string, object>? attributes, int? rank)
        {
            var converted = (attributes ?? new Dictionary<string, object>()).Select(a => a.Value switch
            {
                long or int => Int(a.Key, System.Convert.ToInt64(a.Value, System.Globalization.CultureInfo.InvariantCulture)),
                float or double => Float(a.Key, System.Convert.ToSingle(a.Value, System.Globalization.CultureInfo.InvariantCulture)),
                long[] values => Ints(a.Key, values),
                _ => throw new ArgumentException($"ONNX attribute '{a.Key}' of node '{name}' is a {a.Value?.GetType().Name ?? "null"}; give a long, a float or a long[].", nameof(attributes)),
            }).ToArray();
            Node(op, name, inputs, converted);
            if (rank is int r) _rank = r;
        }

        private string Unique(string name)
        {
            string candidate = name;
            for (int i = 1; !_names.Add(candidate); i++) candidate = $"{name}_{i}";
            return candidate;
        }

        private void RequireImage(string name)
        {
            if (_rank != 4) throw new NotSupportedException($"Module '{name}' pools over height and width, but it receives a rank-{_rank} tensor.");
        }

        private long Axis(string name, long dim)
        {
            long axis = dim < 0 ? dim + _rank : dim;
            if (axis < 0 || axis >= _rank) throw new NotSupportedException($"Module '{name}' works on dim {dim} of a rank-{_rank} tensor.");
            return axis;
        }

        private static ValueInfoProto Value(string name, long[] featureDims)
        {
            var shape = new TensorShapeProto();
            shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = "batch" });
            foreach (long d in featureDims) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
            return new ValueInfoProto
            {
                Name = name,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } },
            };
        }

        private static (long, long) Pair(long[]? values, long fallback) =>
            values is null || values.Length == 0 ? (fallback, fallback) : values.Length == 1 ? (values[0], values[0]) : (values[0], values[1]);

        internal static AttributeProto Int(string name, long value) =>
            new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

        internal static AttributeProto Float(string name, float value) =>
            new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

        internal static AttributeProto Ints(string name, params long[] values)
        {
            var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
            attribute.Ints.AddRange(values);
            return attribute;
        }
    }
}
