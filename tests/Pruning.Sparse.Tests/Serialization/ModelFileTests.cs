using System.Buffers.Binary;
using System.Diagnostics;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Serialization;
using Pruning.Sparse.Tests.Layers;

namespace Pruning.Sparse.Tests.Serialization;

public class ModelFileTests
{
    private static SparseModel Model() => new(new FeatureShape(1, 12, 12),
        LayerTests.SmallCnn().Layers.Append(new LinearLayer(new DenseMatrix(Reference.Random(30, 9), 3, 10), null))
            .Append(new LinearLayer(CsrMatrix.Create(2, 3, [0, 1, 2], new[] { 0, 2 }, [1f, -1f]), [0.5f, 0.25f])));

    [Fact]
    public void A_saved_model_loads_with_identical_layers_and_outputs()
    {
        SparseModel model = Model();
        string path = Path.Combine(Path.GetTempPath(), $"model-{Guid.NewGuid():N}.psm");
        try
        {
            SparseModelFile.Save(model, path);
            SparseModel loaded = SparseModelFile.Load(path);
            loaded.Describe().Should().Be(model.Describe());
            SparseModelFile.ToBytes(loaded).Should().Equal(File.ReadAllBytes(path));
            float[] x = Reference.Random(3 * 144, 2);
            loaded.Run(x, 3).Should().Equal(model.Run(x, 3));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Global_average_pooling_survives_the_round_trip()
    {
        var model = new SparseModel(new FeatureShape(3, 4, 4), [new GlobalAveragePoolLayer(), new FlattenLayer(), new LinearLayer(new DenseMatrix(Reference.Random(6, 1), 2, 3), null)]);
        var loaded = SparseModelFile.Read(SparseModelFile.ToBytes(model));
        loaded.Describe().Should().Be(model.Describe());
        float[] x = Reference.Random(2 * 48, 2);
        loaded.Run(x, 2).Should().Equal(model.Run(x, 2));
    }

    [Fact]
    public void Wide_column_indices_survive_the_round_trip()
    {
        var w = new float[2 * 70_000];
        w[69_999] = 3; w[70_000 + 65_536] = 4;
        var model = new SparseModel(new FeatureShape(70_000), [new LinearLayer(CsrMatrix.FromDense(w, 2, 70_000), null)]);
        var loaded = SparseModelFile.Read(SparseModelFile.ToBytes(model));
        ((CsrMatrix)((LinearLayer)loaded.Layers[0]).Weight).ToDense().Should().Equal(w);
    }

    [Fact]
    public void Every_truncation_is_reported_naming_the_source()
    {
        byte[] bytes = SparseModelFile.ToBytes(Model());
        for (int length = 0; length < bytes.Length; length += Math.Max(1, bytes.Length / 300))
        {
            Action read = () => SparseModelFile.Read(bytes.AsSpan(0, length), "cut.psm");
            read.Should().Throw<SparseModelFormatException>().WithMessage("'cut.psm' is not a valid sparse model file: *");
        }
    }

    [Fact]
    public void A_flipped_bit_fails_the_checksum()
    {
        byte[] bytes = SparseModelFile.ToBytes(Model());
        bytes[bytes.Length / 2] ^= 0x10;
        Action read = () => SparseModelFile.Read(bytes, "flip.psm");
        read.Should().Throw<SparseModelFormatException>().WithMessage("*checksum does not match*");
    }

    [Fact]
    public void Wrong_magic_and_version_are_named()
    {
        byte[] bytes = SparseModelFile.ToBytes(Model());
        byte[] other = (byte[])bytes.Clone();
        other[0] = (byte)'X';
        FluentActions.Invoking(() => SparseModelFile.Read(other, "m")).Should().Throw<SparseModelFormatException>().WithMessage("*does not start with*");
        byte[] newer = (byte[])bytes.Clone();
        newer[8] = 2;
        FluentActions.Invoking(() => SparseModelFile.Read(newer, "m")).Should().Throw<SparseModelFormatException>().WithMessage("*version is 2*reads version 1*");
    }

    [Fact]
    public void A_hostile_file_with_a_valid_checksum_cannot_request_a_giant_allocation()
    {
        // A single dense Linear claiming 2³⁰ × 2³⁰ weights, with a correct checksum: refused before allocating.
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            w.Write("PRNSPMDL"u8); w.Write(1u); w.Write(4); w.Write(1); w.Write(1); w.Write(1u);
            w.Write((byte)1); w.Write((byte)1); w.Write(1 << 30); w.Write(1 << 30); w.Write(new byte[64]);
        }
        byte[] bytes = WithChecksum(ms.ToArray());
        long before = GC.GetAllocatedBytesForCurrentThread();
        FluentActions.Invoking(() => SparseModelFile.Read(bytes, "hostile.psm")).Should().Throw<SparseModelFormatException>()
            .WithMessage("*ends inside layer 0 dense weights*");
        (GC.GetAllocatedBytesForCurrentThread() - before).Should().BeLessThan(1 << 20);
    }

    [Fact]
    public void Missing_file_is_named()
    {
        FluentActions.Invoking(() => SparseModelFile.Load("/no/such/model.psm")).Should().Throw<FileNotFoundException>().WithMessage("*'/no/such/model.psm'*");
    }

    /// <summary>
    /// Fuzzing for a bounded time: mutated valid files (bit flips, byte overwrites, truncations, splices), half of
    /// them with the checksum repaired so the parser itself is exercised. Loading must either succeed and run, or
    /// fail with <see cref="SparseModelFormatException"/> — never another exception, a crash or a hang.
    /// </summary>
    [Fact]
    public void Fuzzed_files_load_or_fail_cleanly()
    {
        byte[] valid = SparseModelFile.ToBytes(Model());
        var random = new Random(20261124);
        var clock = Stopwatch.StartNew();
        int cases = 0, loaded = 0;
        while (clock.Elapsed < TimeSpan.FromSeconds(4) || cases < 2000)
        {
            byte[] bytes = Mutate(valid, random);
            if (random.Next(2) == 0 && bytes.Length > 4) bytes = WithChecksum(bytes[..^4]);
            cases++;
            try
            {
                SparseModel model = SparseModelFile.Read(bytes, "fuzz");
                model.Run(new float[model.InputShape.Size], 1);
                loaded++;
            }
            catch (SparseModelFormatException)
            {
            }
            catch (Exception e)
            {
                throw new Xunit.Sdk.XunitException($"Case {cases}: {e.GetType().Name}: {e.Message}\n{Convert.ToBase64String(bytes)}");
            }
            if (clock.Elapsed > TimeSpan.FromSeconds(20)) break;
        }
        cases.Should().BeGreaterThan(500);
        loaded.Should().BeLessThan(cases);
    }

    private static byte[] Mutate(byte[] valid, Random random)
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

    private static byte[] WithChecksum(byte[] payload)
    {
        var bytes = new byte[payload.Length + 4];
        payload.CopyTo(bytes, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(payload.Length), Crc32.Compute(payload));
        return bytes;
    }
}
