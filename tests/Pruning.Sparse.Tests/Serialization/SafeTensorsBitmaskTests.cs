using System.Buffers.Binary;
using Pruning.Sparse.Serialization;

namespace Pruning.Sparse.Tests.Serialization;

public class SafeTensorsBitmaskTests
{
    [Fact]
    public void Sparse_weights_are_written_in_the_compressed_tensors_bitmask_layout()
    {
        // 2×10 weight: row 0 keeps columns 0 and 9, row 1 keeps column 3.
        var w = new float[20];
        w[0] = 1.5f; w[9] = -2; w[13] = 4;
        string path = Path.Combine(Path.GetTempPath(), $"st-{Guid.NewGuid():N}.safetensors");
        try
        {
            SafeTensorsBitmask.Write(path, [new NamedTensor("fc.weight", [2, 10], w, true), new NamedTensor("fc.bias", [2], [0.5f, -0.5f], false)]);
            byte[] file = File.ReadAllBytes(path);
            long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
            (headerLength % 8).Should().Be(0);
            using var header = SafeTensorsBitmask.ReadHeader(path);
            var root = header.RootElement;
            root.GetProperty("__metadata__").GetProperty("compression").GetString().Should().Be("sparse-bitmask");

            ReadOnlySpan<byte> Data(string name, string dtype, params long[] shape)
            {
                var e = root.GetProperty(name);
                e.GetProperty("dtype").GetString().Should().Be(dtype);
                e.GetProperty("shape").EnumerateArray().Select(v => v.GetInt64()).Should().Equal(shape);
                long begin = e.GetProperty("data_offsets")[0].GetInt64(), end = e.GetProperty("data_offsets")[1].GetInt64();
                return file.AsSpan((int)(8 + headerLength + begin), (int)(end - begin));
            }

            System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(Data("fc.shape", "I64", 2)).ToArray().Should().Equal(2, 10);
            System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(Data("fc.compressed", "F32", 3)).ToArray().Should().Equal(1.5f, -2f, 4f);
            // Little bit order: row 0 → bits 0 and 9 → bytes 0x01, 0x02; row 1 → bit 3 → 0x08, 0x00.
            Data("fc.bitmask", "U8", 2, 2).ToArray().Should().Equal(0x01, 0x02, 0x08, 0x00);
            System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(Data("fc.row_offsets", "I64", 2)).ToArray().Should().Equal(0, 2);
            System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(Data("fc.bias", "F32", 2)).ToArray().Should().Equal(0.5f, -0.5f);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
