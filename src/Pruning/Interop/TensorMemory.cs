using System.Buffers;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Interop;

/// <summary>
/// A <see cref="Memory{T}"/> over a contiguous CPU float32 tensor's storage, so that code taking memory (the selection
/// engine) reads the tensor in place. Valid while the tensor lives; libtorch's storage does not move.
/// </summary>
internal sealed unsafe class TensorMemory : MemoryManager<float>
{
    private readonly float* _data;
    private readonly int _length;

    private TensorMemory(float* data, int length)
    {
        _data = data;
        _length = length;
    }

    /// <summary>The tensor's values as memory; the tensor must be a contiguous CPU float32 tensor.</summary>
    public static ReadOnlyMemory<float> Of(Tensor tensor)
    {
        if (tensor.device_type != DeviceType.CPU || tensor.dtype != ScalarType.Float32 || !tensor.is_contiguous())
            throw new ArgumentException("Only contiguous CPU float32 tensors can be read in place.", nameof(tensor));
        Span<float> values = MemoryMarshal.Cast<byte, float>(tensor.bytes);
        if (values.IsEmpty) return ReadOnlyMemory<float>.Empty;
        return new TensorMemory((float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref MemoryMarshal.GetReference(values)), values.Length).Memory;
    }

    public override Span<float> GetSpan() => new(_data, _length);

    public override MemoryHandle Pin(int elementIndex = 0) => new(_data + elementIndex);

    public override void Unpin() { }

    protected override void Dispose(bool disposing) { }
}
