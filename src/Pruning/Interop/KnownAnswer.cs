namespace Pruning.Interop;

/// <summary>
/// One small libtorch computation and its answer in double precision, computed by us without libtorch.
/// <see cref="Compute"/> returns libtorch's float32 result in the same order as <see cref="Expected"/>.
/// </summary>
/// <param name="Name">What is computed, with its shape (e.g. "conv2d 5×5, 17→16 channels, 9×9").</param>
/// <param name="Operation">The libtorch operation it exercises, for naming the component (see <see cref="Route"/>).</param>
/// <param name="Compute">Runs libtorch; must leave no tensors behind and must not draw from torch's generator.</param>
/// <param name="Expected">The exact answer, in double precision.</param>
internal sealed record KnownAnswer(string Name, TorchOperation Operation, Func<float[]> Compute, double[] Expected)
{
    /// <summary>
    /// The largest error relative to the answer's range. Float32 rounding over the few hundred terms of these sums stays
    /// below 1e-6; a wrong kernel is off by 1e-2 or more.
    /// </summary>
    public const double Tolerance = 1e-4;

    /// <summary>Runs <see cref="Compute"/> and returns the largest |got − expected| over the largest |expected|; a
    /// result of the wrong length or with a NaN counts as infinitely wrong.</summary>
    public double RelativeError()
    {
        float[] got = Compute();
        if (got.Length != Expected.Length) return double.PositiveInfinity;
        double error = 0, range = 0;
        for (int i = 0; i < got.Length; i++)
        {
            double difference = Math.Abs(got[i] - Expected[i]);
            if (double.IsNaN(difference)) return double.PositiveInfinity;
            error = Math.Max(error, difference);
            range = Math.Max(range, Math.Abs(Expected[i]));
        }
        return range == 0 ? error : error / range;
    }

    /// <summary>The components that compute <paramref name="operation"/> in libtorch 2.10 on x86-64 CPUs, given whether
    /// ATen hands work to oneDNN.</summary>
    public static string Route(TorchOperation operation, bool oneDnn) => operation switch
    {
        TorchOperation.Convolution when oneDnn => "oneDNN JIT convolution (ATen conv2d → mkldnn)",
        TorchOperation.Convolution => "ATen slow_conv2d (im2col + MKL sgemm)",
        TorchOperation.ConvolutionBackward when oneDnn => "oneDNN JIT convolution backward (ATen → mkldnn)",
        TorchOperation.ConvolutionBackward => "ATen slow_conv2d backward (MKL sgemm)",
        TorchOperation.Lstm when oneDnn => "oneDNN RNN (ATen lstm → mkldnn_rnn, brgemm)",
        TorchOperation.Lstm => "ATen LSTM cells (MKL sgemm, ATen sigmoid/tanh)",
        _ => "MKL sgemm (ATen addmm)",
    };
}

/// <summary>The libtorch operations the health check exercises.</summary>
internal enum TorchOperation
{
    /// <summary>conv2d forward.</summary>
    Convolution,

    /// <summary>conv2d's input and weight gradients.</summary>
    ConvolutionBackward,

    /// <summary>nn.LSTM forward.</summary>
    Lstm,

    /// <summary>Linear (addmm).</summary>
    Linear,
}
