using Microsoft.ML.OnnxRuntime;
using Pruning.Export;
using Pruning.Sparse.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Benchmarks.Baselines;

/// <summary>
/// One dense Linear (no bias) in ONNX Runtime, written by our ONNX exporter (a Gemm with a constant, prepacked weight),
/// run through its fastest API: preallocated input and output OrtValues bound once (IoBinding).
/// </summary>
internal sealed class OrtLinear : IDisposable
{
    private readonly InferenceSession _session;
    private readonly OrtIoBinding _binding;
    private readonly RunOptions _run = new();
    private readonly OrtValue _input, _output;

    public OrtLinear(float[] weight, int rows, int cols, int batch, int threads)
    {
        byte[] onnx;
        using (var linear = nn.Linear(cols, rows, hasBias: false))
        {
            using (torch.no_grad()) linear.weight!.copy_(torch.tensor(weight, [rows, cols]));
            using var model = nn.Sequential(("fc", linear));
            onnx = OnnxExport.ToBytes(model, new FeatureShape(cols));
        }
        using var options = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        _session = new InferenceSession(onnx, options);
        _input = OrtValue.CreateTensorValueFromMemory(new float[(long)batch * cols], [batch, cols]);
        _output = OrtValue.CreateTensorValueFromMemory(new float[(long)batch * rows], [batch, rows]);
        _binding = _session.CreateIoBinding();
        _binding.BindInput("input", _input);
        _binding.BindOutput("output", _output);
    }

    public void Run() => _session.RunWithBinding(_run, _binding);

    public void Dispose()
    {
        _binding.Dispose();
        _input.Dispose();
        _output.Dispose();
        _run.Dispose();
        _session.Dispose();
    }
}
