using Pruning.Sparse;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Export;

/// <summary>Runs a <see cref="SparseModel"/> on TorchSharp tensors without copying them in or out.</summary>
public static class SparseModelTensors
{
    /// <summary>
    /// Runs <paramref name="model"/> on <paramref name="input"/> ([N, …] float32 on the CPU; a non-contiguous or
    /// other-dtype tensor is converted first). The kernels read the tensor's storage in place and write straight
    /// into the returned tensor's storage.
    /// </summary>
    public static Tensor Run(this SparseModel model, Tensor input, int threads = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(input);
        if (input.device_type != DeviceType.CPU) throw new ArgumentException($"The input must be on the CPU, not {input.device}.", nameof(input));
        if (input.dim() < 1) throw new ArgumentException("The input needs a batch dimension.", nameof(input));
        int batch = (int)input.shape[0];
        long perSample = input.numel() / Math.Max(1, batch);
        if (perSample != model.InputShape.Size)
            throw new ArgumentException($"Each sample must hold {model.InputShape} = {model.InputShape.Size} values, got shape [{string.Join(", ", input.shape)}].", nameof(input));
        Tensor source = input.dtype == ScalarType.Float32 && input.is_contiguous() ? input : input.to_type(ScalarType.Float32).contiguous();
        try
        {
            var shape = model.OutputShape.IsVector
                ? new long[] { batch, model.OutputShape.Channels }
                : new long[] { batch, model.OutputShape.Channels, model.OutputShape.Height, model.OutputShape.Width };
            Tensor output = torch.empty(shape, ScalarType.Float32);
            model.Run(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(source.bytes),
                      System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(output.bytes), batch, threads);
            return output;
        }
        finally
        {
            if (!ReferenceEquals(source, input)) source.Dispose();
        }
    }
}
