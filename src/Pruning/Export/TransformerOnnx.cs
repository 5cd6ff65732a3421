using Onnx;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Sequences;
using static Pruning.Export.OnnxExport.GraphBuilder;

namespace Pruning.Export;

/// <summary>
/// The ONNX graph of a <see cref="TransformerModel"/> (already checked against its TorchSharp module by
/// <see cref="SparseExport.ToTransformerModel"/>): int64 tokens [batch, steps] in, float logits [batch, steps, vocabulary] out, both
/// dimensions symbolic. Gather for the embeddings, LayerNormalization (opset 17), MatMul + Add for every projection
/// (dense weights with the pruned zeros in place), attention as MatMul/Softmax with the causal mask sliced from a
/// [context, context] constant, GELU written out with Erf or Tanh (the same graph on every opset from 17).
/// </summary>
internal sealed class TransformerOnnx
{
    private readonly GraphProto _graph = new() { Name = "transformer" };
    private readonly HashSet<string> _names = [];
    private readonly TransformerModel _model;

    private TransformerOnnx(TransformerModel model) => _model = model;

    internal static ModelProto Build(TransformerModel model, OnnxExportOptions options)
    {
        if (options.Opset < 17)
            throw new ArgumentOutOfRangeException(nameof(options), options.Opset, "A transformer needs opset 17 or later (LayerNormalization).");
        var g = new TransformerOnnx(model);
        return g.Emit(options);
    }

    private ModelProto Emit(OnnxExportOptions options)
    {
        int d = _model.Dimension, context = _model.Context;
        _graph.Input.Add(Value(options.InputName, TensorProto.Types.DataType.Int64, 2));
        _names.Add(options.InputName);
        _names.Add(options.OutputName);
        string tokens = options.InputName;
        // positions = Range(0, steps): steps from the input's shape.
        string steps = Node("Gather", "steps", [Node("Shape", "shape", [tokens]), Int64s("one_index", [], 1)], Int("axis", 0));
        string positions = Node("Range", "positions", [Int64s("zero", [], 0), steps, Int64s("one", [], 1)]);
        string x = Node("Add", "embedded", [
            Node("Gather", "token_vectors", [Floats("tokens.weight", _model.Tokens.Table.ToDense(), [_model.Tokens.Vocabulary, d]), tokens]),
            Node("Gather", "position_vectors", [Floats("positions.weight", _model.Positions.Table.ToDense(), [context, d]), positions])]);
        // The causal mask: 0 on and below the diagonal, −∞ above, cut to [steps, steps].
        var mask = new float[(long)context * context];
        for (int i = 0; i < context; i++)
            for (int j = i + 1; j < context; j++) mask[(long)i * context + j] = float.NegativeInfinity;
        string steps1d = Node("Unsqueeze", "steps_1d", [steps, Int64s("axis0", [1], 0)]);
        string ends = Node("Concat", "mask_ends", [steps1d, steps1d], Int("axis", 0));
        string causal = Node("Slice", "causal_mask", [Floats("mask", mask, [context, context]), Int64s("mask_starts", [2], 0, 0), ends, Int64s("mask_axes", [2], 0, 1)]);
        for (int l = 0; l < _model.Blocks.Count; l++) x = Block($"blocks.{l}", _model.Blocks[l], x, causal);
        if (_model.FinalNorm is { } final) x = Norm("norm", final, x);
        Linear("decoder", _model.Decoder, x);
        _graph.Node[^1].Output[0] = options.OutputName;
        _graph.Output.Add(Value(options.OutputName, TensorProto.Types.DataType.Float, 3));
        return Model(_graph, options.Opset, nameof(TransformerModel));
    }

    private string Block(string name, TransformerBlock block, string x, string causal)
    {
        int d = block.Dimension, heads = block.Heads, size = d / heads;
        string a = block.NormFirst ? Norm($"{name}.norm1", block.AttentionNorm, x) : x;
        string qkv = Linear($"{name}.qkv", block.QueryKeyValue, a);
        string[] parts = ["q", "k", "v"];
        var split = new NodeProto { OpType = "Split", Name = Unique($"{name}.split") };
        split.Input.Add(qkv);
        split.Input.Add(Int64s($"{name}.split_sizes", [3], d, d, d));
        foreach (string part in parts) split.Output.Add(Unique($"{name}.{part}"));
        split.Attribute.Add(Int("axis", -1));
        _graph.Node.Add(split);
        string shape = Int64s($"{name}.heads_shape", [4], 0, 0, heads, size);
        string Heads(int i, params long[] perm) =>
            Node("Transpose", $"{name}.{parts[i]}_heads", [Node("Reshape", $"{name}.{parts[i]}_split", [split.Output[i], shape])], Ints("perm", perm));
        string q = Heads(0, 0, 2, 1, 3), kT = Heads(1, 0, 2, 3, 1), v = Heads(2, 0, 2, 1, 3);
        string scores = Node("Mul", $"{name}.scores", [Node("MatMul", $"{name}.qk", [q, kT]), Floats($"{name}.scale", [1f / MathF.Sqrt(size)], [])]);
        string weights = Node("Softmax", $"{name}.weights", [Node("Add", $"{name}.masked", [scores, causal])], Int("axis", -1));
        string attended = Node("Transpose", $"{name}.attended_t", [Node("MatMul", $"{name}.attended", [weights, v])], Ints("perm", 0, 2, 1, 3));
        string merged = Node("Reshape", $"{name}.merged", [attended, Int64s($"{name}.merged_shape", [3], 0, 0, d)]);
        x = Node("Add", $"{name}.residual1", [x, Linear($"{name}.out", block.AttentionOutput, merged)]);
        if (!block.NormFirst) x = Norm($"{name}.norm1", block.AttentionNorm, x);
        string m = block.NormFirst ? Norm($"{name}.norm2", block.MlpNorm, x) : x;
        string u = Gelu($"{name}.gelu", block.Gelu, Linear($"{name}.up", block.MlpUp, m));
        x = Node("Add", $"{name}.residual2", [x, Linear($"{name}.down", block.MlpDown, u)]);
        return block.NormFirst ? x : Norm($"{name}.norm2", block.MlpNorm, x);
    }

    private string Gelu(string name, GeluApproximation kind, string u)
    {
        string half = Node("Mul", $"{name}.half", [u, Floats($"{name}.0.5", [0.5f], [])]);
        string inner;
        if (kind == GeluApproximation.Tanh)
        {
            string cube = Node("Mul", $"{name}.cube", [Node("Mul", $"{name}.square", [u, u]), u]);
            string sum = Node("Add", $"{name}.sum", [u, Node("Mul", $"{name}.cubic", [cube, Floats($"{name}.c", [0.044715f], [])])]);
            inner = Node("Tanh", $"{name}.tanh", [Node("Mul", $"{name}.scaled", [sum, Floats($"{name}.k", [MathF.Sqrt(2 / MathF.PI)], [])])]);
        }
        else inner = Node("Erf", $"{name}.erf", [Node("Mul", $"{name}.scaled", [u, Floats($"{name}.k", [1 / MathF.Sqrt(2)], [])])]);
        return Node("Mul", name, [half, Node("Add", $"{name}.one_plus", [inner, Floats($"{name}.1", [1f], [])])]);
    }

    private string Norm(string name, Sparse.Sequences.LayerNorm norm, string x) =>
        Node("LayerNormalization", name, [x, Floats($"{name}.weight", norm.Weight.ToArray(), [norm.Dimension]), Floats($"{name}.bias", norm.Bias.ToArray(), [norm.Dimension])],
            Int("axis", -1), Float("epsilon", norm.Epsilon));

    /// <summary>y = x·Wᵀ + b on the last dimension.</summary>
    private string Linear(string name, LinearLayer layer, string x)
    {
        int rows = layer.Weight.Rows, cols = layer.Weight.Cols;
        string y = Node("MatMul", $"{name}.matmul", [x, Floats($"{name}.weight_t", Transposed(layer.Weight.ToDense(), rows, cols), [cols, rows])]);
        return layer.Bias.IsEmpty ? y : Node("Add", name, [y, Floats($"{name}.bias", layer.Bias.ToArray(), [rows])]);
    }

    private string Node(string op, string name, IEnumerable<string> inputs, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = Unique(name) };
        node.Input.AddRange(inputs);
        node.Output.Add(node.Name);
        node.Attribute.AddRange(attributes);
        _graph.Node.Add(node);
        return node.Name;
    }

    private string Floats(string name, float[] values, long[] dims)
    {
        TensorProto tensor = FloatTensor(Unique(name), values, dims);
        _graph.Initializer.Add(tensor);
        return tensor.Name;
    }

    private string Int64s(string name, long[] dims, params long[] values)
    {
        var tensor = new TensorProto { Name = Unique(name), DataType = (int)TensorProto.Types.DataType.Int64 };
        tensor.Dims.AddRange(dims);
        tensor.Int64Data.AddRange(values);
        _graph.Initializer.Add(tensor);
        return tensor.Name;
    }

    private string Unique(string name)
    {
        string candidate = name;
        for (int i = 1; !_names.Add(candidate); i++) candidate = $"{name}_{i}";
        return candidate;
    }

    private static ValueInfoProto Value(string name, TensorProto.Types.DataType type, int rank)
    {
        var shape = new TensorShapeProto();
        shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = "batch" });
        shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = "steps" });
        if (rank == 3) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = "vocabulary" });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } } };
    }
}
