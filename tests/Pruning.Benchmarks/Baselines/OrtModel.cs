using Microsoft.ML.OnnxRuntime;

namespace Pruning.Benchmarks.Baselines;

/// <summary>
/// An ONNX model in ONNX Runtime run through its fastest C# API: input and output OrtValues over arrays allocated once,
/// bound once (IoBinding); intra-op threads as many as ours.
/// </summary>
internal sealed class OrtModel : IDisposable
{
    private readonly InferenceSession _session;
    private readonly RunOptions _run = new();
    private readonly List<IDisposable> _owned = [];
    private readonly long[] _input;
    private readonly int _outputs;

    /// <param name="onnx">The model's bytes.</param>
    /// <param name="input">One sample's input shape.</param>
    /// <param name="outputs">Outputs per sample.</param>
    /// <param name="threads">Intra-op threads.</param>
    public OrtModel(byte[] onnx, long[] input, int outputs, int threads)
    {
        using var options = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        _session = new InferenceSession(onnx, options);
        _input = input;
        _outputs = outputs;
    }

    /// <summary>A call that runs <paramref name="batch"/> samples of <paramref name="x"/> (bound in place, not copied).</summary>
    public Action Prepared(float[] x, int batch)
    {
        var inputValue = OrtValue.CreateTensorValueFromMemory(x, [batch, .. _input]);
        var output = OrtValue.CreateTensorValueFromMemory(new float[batch * _outputs], [batch, _outputs]);
        var binding = _session.CreateIoBinding();
        binding.BindInput(_session.InputNames[0], inputValue);
        binding.BindOutput(_session.OutputNames[0], output);
        _owned.AddRange([binding, inputValue, output]);
        return () => _session.RunWithBinding(_run, binding);
    }

    public void Dispose()
    {
        foreach (var o in _owned) o.Dispose();
        _run.Dispose();
        _session.Dispose();
    }
}
