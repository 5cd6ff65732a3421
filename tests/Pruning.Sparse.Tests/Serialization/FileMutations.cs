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

    /// <summary>
    /// Mutates <paramref name="valid"/> 1,500 times (half with the checksum repaired): each result loads and runs within
    /// the budget, or is refused with a <see cref="SparseModelFormatException"/> within a bounded allocation; enough of
    /// each kind happen that neither the parser nor the checksum is the only line of defence.
    /// </summary>
    public static void ShouldLoadOrFailCleanly<T>(byte[] valid, int seed, Func<byte[], SparseModelOptions, T> read, Action<T> run)
    {
        var options = new SparseModelOptions { MaxBufferBytes = 1 << 20 };
        var random = new Random(seed);
        int loaded = 0, refusedByParser = 0;
        for (int trial = 0; trial < 1500; trial++)
        {
            byte[] bytes = Mutate(valid, random);
            bool repaired = random.Next(2) == 0 && bytes.Length > 4;
            if (repaired) bytes = WithChecksum(bytes[..^4]);
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                run(read(bytes, options));
                (GC.GetAllocatedBytesForCurrentThread() - before).Should().BeLessThan(4L * bytes.Length + options.MaxBufferBytes + (256 << 10), $"trial {trial}");
                loaded++;
            }
            catch (SparseModelFormatException e)
            {
                if (repaired && !e.Message.Contains("checksum")) refusedByParser++;
                (GC.GetAllocatedBytesForCurrentThread() - before).Should().BeLessThan(4L * bytes.Length + (256 << 10), $"refusing trial {trial}");
            }
            catch (Exception e) when (e is not Xunit.Sdk.XunitException)
            {
                throw new Xunit.Sdk.XunitException($"Trial {trial}: {e.GetType().Name}: {e.Message}\n{Convert.ToBase64String(bytes)}");
            }
        }
        loaded.Should().BeGreaterThan(10, "mutated weight values with a repaired checksum are valid models");
        refusedByParser.Should().BeGreaterThan(100, "with the checksum repaired, the parser's own checks must catch the damage");
    }
}
