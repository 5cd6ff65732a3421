using System.Buffers.Binary;
using Pruning.Sparse.Serialization;

namespace Pruning.Sparse.Tests.Serialization;

/// <summary>How the file tests damage valid files: bit flips, extreme integers, truncations, splices; and a checksum repaired after.</summary>
internal static class FileMutations
{
    public static byte[] Mutate(byte[] valid, Random random)
    {
        byte[] bytes = (byte[])valid.Clone();
        switch (random.Next(4))
        {
            case 0:
                for (int i = random.Next(1, 4); i > 0; i--) bytes[random.Next(bytes.Length)] ^= (byte)(1 << random.Next(8));
                return bytes;
            case 1:
                // Overwrite an aligned int with an extreme value: counts, extents, row pointers.
                int at = random.Next(12, bytes.Length - 4) & ~3;
                int[] extremes = [0, -1, 1, int.MaxValue, int.MinValue, 65_536, 65_537, random.Next()];
                BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(at), extremes[random.Next(extremes.Length)]);
                return bytes;
            case 2:
                return bytes[..random.Next(bytes.Length)];
            default:
                int from = random.Next(bytes.Length), to = random.Next(bytes.Length), count = random.Next(1, 64);
                count = Math.Min(count, Math.Min(bytes.Length - from, bytes.Length - to));
                Array.Copy(valid, from, bytes, to, count);
                return bytes;
        }
    }

    public static byte[] WithChecksum(byte[] payload)
    {
        var bytes = new byte[payload.Length + 4];
        payload.CopyTo(bytes, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(payload.Length), Crc32.Compute(payload));
        return bytes;
    }
}
