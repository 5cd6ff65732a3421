using Pruning.Export;
using Pruning.Sparse.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Benchmarks.Baselines;

/// <summary>One dense Linear (no bias) in ONNX Runtime, written by our ONNX exporter: a Gemm with a constant, prepacked weight.</summary>
internal sealed class OrtLinear : IDisposable
{
    private readonly OrtModel _model;
    private readonly Action _run;

    public OrtLinear(float[] weight, int rows, int cols, int batch, int threads)
    {
        byte[] onnx;
        using (var linear = nn.Linear(cols, rows, hasBias: false))
        {
            using (torch.no_grad()) linear.weight!.copy_(torch.tensor(weight, [rows, cols]));
            using var model = nn.Sequential(("fc", linear));
            onnx = OnnxExport.ToBytes(model, new FeatureShape(cols));
        }
        _model = new OrtModel(onnx, [cols], rows, threads);
        _run = _model.Prepared(new float[(long)batch * cols], batch);
    }

    public void Run() => _run();

    public void Dispose() => _model.Dispose();
}
