namespace Pruning.Export;

/// <summary>
/// The ONNX graph a <see cref="Structure.ModuleHandler"/> adds a module's nodes to (<see cref="Structure.ModuleHandler.ToOnnx"/>):
/// <see cref="Current"/> is the tensor flowing into the module; each <see cref="Node"/>'s output becomes the current
/// tensor, so the last node's output is the module's.
/// </summary>
public sealed class OnnxLowering
{
    private readonly OnnxExport.GraphBuilder _graph;

    internal OnnxLowering(OnnxExport.GraphBuilder graph) => _graph = graph;

    /// <summary>The name of the current tensor (the module's input until a node is added).</summary>
    public string Current => _graph.Position.Tensor;

    /// <summary>The current tensor's rank, the batch included.</summary>
    public int Rank => _graph.Position.Rank;

    /// <summary>Adds an initializer (a float32 constant) of shape <paramref name="dims"/>; returns its name, made unique.</summary>
    public string Constant(string name, float[] values, params long[] dims)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(dims);
        if (dims.Aggregate(1L, (a, b) => a * b) != values.Length)
            throw new ArgumentException($"Constant '{name}' has {values.Length} values for dims [{string.Join(", ", dims)}].", nameof(values));
        return _graph.Constant(name, values, dims);
    }

    /// <summary>
    /// Adds a node of ONNX operator <paramref name="opType"/> (default domain) reading <paramref name="inputs"/>
    /// (usually <see cref="Current"/> first), with attributes of type long, float or long[]; its output becomes the
    /// current tensor, of rank <paramref name="rank"/> when the operator changes it.
    /// </summary>
    public void Node(string opType, string name, IReadOnlyList<string> inputs, IReadOnlyDictionary<string, object>? attributes = null, int? rank = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(opType);
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(inputs);
        _graph.Custom(opType, name, inputs, attributes, rank);
    }
}
