using System.Buffers.Binary;
using System.Diagnostics;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Serialization;
using Pruning.Sparse.Tests.Layers;

namespace Pruning.Sparse.Tests.Serialization;

public class SparseModelFileTests
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
            model.Save(path);
            SparseModel loaded = SparseModel.Load(path);
            loaded.Describe().Should().Be(model.Describe());
            loaded.ToBytes().Should().Equal(File.ReadAllBytes(path));
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
        var loaded = SparseModel.Read(model.ToBytes());
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
        var loaded = SparseModel.Read(model.ToBytes());
        ((CsrMatrix)((LinearLayer)loaded.Layers[0]).Weight).ToDense().Should().Equal(w);
    }

    [Fact]
    public void Every_truncation_is_reported_naming_the_source()
    {
        byte[] bytes = Model().ToBytes();
        for (int length = 0; length < bytes.Length; length += Math.Max(1, bytes.Length / 300))
        {
            Action read = () => SparseModel.Read(bytes.AsSpan(0, length), "cut.psm");
            read.Should().Throw<SparseModelFormatException>().WithMessage("'cut.psm' is not a valid sparse model file: *");
        }
    }

    [Fact]
    public void A_flipped_bit_fails_the_checksum()
    {
        byte[] bytes = Model().ToBytes();
        bytes[bytes.Length / 2] ^= 0x10;
        Action read = () => SparseModel.Read(bytes, "flip.psm");
        read.Should().Throw<SparseModelFormatException>().WithMessage("*checksum does not match*");
    }

    [Fact]
    public void Wrong_magic_and_version_are_named()
    {
        byte[] bytes = Model().ToBytes();
        byte[] other = (byte[])bytes.Clone();
        other[0] = (byte)'X';
        FluentActions.Invoking(() => SparseModel.Read(other, "m")).Should().Throw<SparseModelFormatException>().WithMessage("*does not start with*");
        byte[] newer = (byte[])bytes.Clone();
        newer[8] = 3;
        FluentActions.Invoking(() => SparseModel.Read(newer, "m")).Should().Throw<SparseModelFormatException>().WithMessage("*version is 3*reads versions 1 to 2*");
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
        byte[] bytes = FileMutations.WithChecksum(ms.ToArray());
        long before = GC.GetAllocatedBytesForCurrentThread();
        FluentActions.Invoking(() => SparseModel.Read(bytes, "hostile.psm")).Should().Throw<SparseModelFormatException>()
            .WithMessage("*ends inside layer 0 dense weights*");
        (GC.GetAllocatedBytesForCurrentThread() - before).Should().BeLessThan(1 << 20);
    }

    [Fact]
    public void Missing_file_is_named()
    {
        FluentActions.Invoking(() => SparseModel.Load("/no/such/model.psm")).Should().Throw<FileNotFoundException>().WithMessage("*'/no/such/model.psm'*");
    }

    /// <summary>A model file written by hand: the header, then <paramref name="layers"/>, then the checksum.</summary>
    private static byte[] Handmade(int c, int h, int w, uint count, Action<BinaryWriter> layers)
    {
        using var ms = new MemoryStream();
        using (var writer = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            writer.Write("PRNSPMDL"u8); writer.Write(1u); writer.Write(c); writer.Write(h); writer.Write(w); writer.Write(count);
            layers(writer);
        }
        return FileMutations.WithChecksum(ms.ToArray());
    }

    /// <summary>A 1×1 Conv2d, 1 → 1 channel, dense weight 1, no bias, with the given padding.</summary>
    private static void PaddedPointwiseConv(BinaryWriter w, int padding)
    {
        w.Write((byte)2);
        foreach (int v in new[] { 1, 1, 1, 1, 1, padding, padding, 1, 1 }) w.Write(v);
        w.Write((byte)1); w.Write(1); w.Write(1); w.Write(1f);
        w.Write((byte)0);
    }

    [Fact]
    public void A_tiny_file_whose_padding_would_blow_up_the_activations_is_refused_before_allocating()
    {
        // Three 1×1 convolutions padded by 1024 on a one-value input: each adds 2048 rows and columns, so the last
        // activation would be 6145² values (~600 MB of buffers) from a file of under 200 bytes.
        byte[] bytes = Handmade(1, 1, 1, 3, w => { for (int i = 0; i < 3; i++) PaddedPointwiseConv(w, 1024); });
        bytes.Length.Should().BeLessThan(200);
        long before = GC.GetAllocatedBytesForCurrentThread();
        FluentActions.Invoking(() => SparseModel.Read(bytes, "padded.psm")).Should().Throw<SparseModelFormatException>()
            .WithMessage("*'padded.psm'*layer 0 is invalid*Padding (1024, 1024)*at most dilation·(kernel − 1) = (0, 0)*");
        (GC.GetAllocatedBytesForCurrentThread() - before).Should().BeLessThan(256 << 10, "the exception and its message are all that is allocated");
    }

    [Fact]
    public void A_file_declaring_a_giant_activation_is_refused_by_the_memory_budget_before_allocating()
    {
        // A 16385×16385 single-channel input through a ReLU: 2 × 1 GiB of activation buffers, from a 46-byte file.
        byte[] bytes = Handmade(1, 16_385, 16_385, 1, w => { w.Write((byte)3); w.Write((byte)1); w.Write(0f); });
        long before = GC.GetAllocatedBytesForCurrentThread();
        FluentActions.Invoking(() => SparseModel.Read(bytes, "giant.psm")).Should().Throw<SparseModelFormatException>()
            .WithMessage("*'giant.psm'*too large to run*2,147,745,800 bytes*budget of 268,435,456*MaxBufferBytes*");
        (GC.GetAllocatedBytesForCurrentThread() - before).Should().BeLessThan(256 << 10, "the exception and its message are all that is allocated");
    }

    [Fact]
    public void The_memory_budget_is_configurable_and_bounds_the_batch_too()
    {
        SparseModel model = Model();
        long perSample = model.BufferBytes(1);
        // Two buffers as wide as conv1's 4×12×12 output, and conv1's direct-convolution scratch: the 14×14 padded input,
        // 16 floats of slack, and 4 wide output rows of 11·14 + 12 = 166 positions rounded up to 176.
        perSample.Should().Be(4 * (2 * 4 * 12 * 12 + (14 * 14 + 16 + 4 * 176)));
        byte[] bytes = model.ToBytes();
        FluentActions.Invoking(() => SparseModel.Read(bytes, "small-budget.psm", new SparseModelOptions { MaxBufferBytes = perSample - 1 }))
            .Should().Throw<SparseModelFormatException>().WithMessage("*too large to run*");
        var tight = SparseModel.Read(bytes, "tight.psm", new SparseModelOptions { MaxBufferBytes = model.BufferBytes(3) });
        tight.Run(new float[3 * 144], 3).Should().HaveCount(6);
        FluentActions.Invoking(() => tight.Run(new float[4 * 144], 4)).Should().Throw<ArgumentOutOfRangeException>()
            .WithMessage("*batch of 4 needs*budget*").Which.ParamName.Should().Be("batch");
    }

    /// <summary>
    /// Fuzzing for a bounded time: mutated valid files (bit flips, byte overwrites, truncations, splices), half of
    /// them with the checksum repaired so the parser itself is exercised, loaded under a 1 MiB budget. Loading must
    /// either fail with <see cref="SparseModelFormatException"/> (never another exception, a crash or a hang), or give
    /// a model that runs, whose file round-trips to the same model, with reading and a batch-1 run together
    /// allocating at most a few times the file plus the budget.
    /// </summary>
    /// <summary><see cref="Model"/> with its CSR layers' values compressed (half, then int8, alternately).</summary>
    internal static SparseModel CompressedModel()
    {
        SparseModel model = Model();
        int k = 0;
        WeightMatrix Compress(WeightMatrix w) => w is CsrMatrix
            ? CsrMatrix.Compress(w.ToDense(), w.Rows, w.Cols, k++ % 2 == 0 ? MatrixFormat.CsrFloat16 : MatrixFormat.CsrInt8)
            : w;
        var layers = model.Layers.Select(l => l switch
        {
            LinearLayer linear => new LinearLayer(Compress(linear.Weight), linear.Bias),
            Conv2dLayer conv => new Conv2dLayer(Compress(conv.Weight), conv.Bias, conv.InChannels, conv.Kernel, conv.Stride, conv.Padding, conv.Dilation, conv.Algorithm),
            _ => l,
        }).ToList();
        k.Should().BeGreaterThan(1, "the test model has at least two CSR layers to compress");
        return new SparseModel(model.InputShape, layers);
    }

    [Fact]
    public void Compressed_values_round_trip_bit_for_bit_in_a_version_2_file_and_exact_models_stay_version_1()
    {
        SparseModel model = CompressedModel();
        byte[] bytes = model.ToBytes();
        BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8)).Should().Be(2u);
        BinaryPrimitives.ReadUInt32LittleEndian(Model().ToBytes().AsSpan(8)).Should().Be(1u, "a file without compressed values stays readable by version-1 readers");
        SparseModel loaded = SparseModel.Read(bytes);
        loaded.Describe().Should().Be(model.Describe());
        loaded.Describe().Should().Contain("CSR fp16").And.Contain("CSR int8");
        loaded.ToBytes().Should().Equal(bytes);
        float[] x = Reference.Random(2 * 144, 5);
        loaded.Run(x, 2).Should().Equal(model.Run(x, 2));

        // The same bytes labelled version 1 are refused: version 1 cannot hold compressed values.
        byte[] old = (byte[])bytes.Clone();
        old[8] = 1;
        FluentActions.Invoking(() => SparseModel.Read(FileMutations.WithChecksum(old[..^4]), "old.psm")).Should().Throw<SparseModelFormatException>()
            .WithMessage("*compressed values*version-1 file cannot hold*");
    }

    [Theory]
    [InlineData(4, "*infinite or NaN*")]    // a half that is +∞
    [InlineData(6, "*−128*")]               // an int8 value outside the symmetric range
    [InlineData(7, "*scale*not a finite*")] // a NaN row scale
    public void Compressed_values_the_kernels_cannot_take_are_refused(int tag, string message)
    {
        // One 1×2 Linear, both entries stored, with a valid checksum.
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            w.Write("PRNSPMDL"u8); w.Write(2u); w.Write(2); w.Write(1); w.Write(1); w.Write(1u);
            w.Write((byte)1); w.Write((byte)(tag == 7 ? 6 : tag)); w.Write(1); w.Write(2); w.Write(2);
            w.Write(0); w.Write(2); w.Write((ushort)0); w.Write((ushort)1);
            if (tag == 4) { w.Write((ushort)0x3c00); w.Write((ushort)0x7c00); }
            else { w.Write(tag == 7 ? float.NaN : 0.5f); w.Write((sbyte)1); w.Write(tag == 6 ? sbyte.MinValue : (sbyte)3); }
            w.Write((byte)0);
        }
        FluentActions.Invoking(() => SparseModel.Read(FileMutations.WithChecksum(ms.ToArray()), "bad.psm")).Should().Throw<SparseModelFormatException>()
            .WithMessage("'bad.psm'*").WithMessage(message);
    }

    /// <summary>A small model with a block-sparse and an N:M layer.</summary>
    internal static SparseModel StructuredModel()
    {
        float[] blocks = Reference.Sparse(12, 8, 0.0, 3);
        for (int r = 4; r < 8; r++) for (int c = 0; c < 8; c++) blocks[r * 8 + c] = 0;   // one whole 4-row block row empty
        float[] nm = new float[4 * 12];
        for (int g = 0; g < nm.Length / 4; g++) { nm[g * 4 + g % 4] = 0.5f + g; nm[g * 4 + (g + 2) % 4] = -1f; }
        return new SparseModel(new FeatureShape(8),
        [
            new LinearLayer(BsrMatrix.FromDense(blocks, 12, 8, (4, 1)), Reference.Random(12, 4)),
            new ActivationLayer(ActivationKind.ReLU),
            new LinearLayer(NmMatrix.FromDense(nm, 4, 12, (2, 4)), default),
        ]);
    }

    [Theory]
    [InlineData("exact")]
    [InlineData("compressed")]
    [InlineData("structured")]
    [InlineData("graph")]
    [InlineData("scale")]
    public void Fuzzed_files_load_or_fail_cleanly_within_a_bounded_allocation(string kind)
    {
        var options = new SparseModelOptions { MaxBufferBytes = 1 << 20 };
        byte[] valid = (kind switch { "compressed" => CompressedModel(), "structured" => StructuredModel(), "graph" => Layers.ConcatLayerTests.Inception(), "scale" => Layers.ScaleLayerTests.Excitation(), _ => Model() }).ToBytes();
        var random = new Random(kind.Length * 20261201);
        var clock = Stopwatch.StartNew();
        int cases = 0, loaded = 0, refusedByParser = 0;
        while (clock.Elapsed < TimeSpan.FromSeconds(4) || cases < 2000)
        {
            byte[] bytes = FileMutations.Mutate(valid, random);
            bool repaired = random.Next(2) == 0 && bytes.Length > 4;
            if (repaired) bytes = FileMutations.WithChecksum(bytes[..^4]);
            cases++;
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                SparseModel model = SparseModel.Read(bytes, "fuzz", options);
                float[] output = model.Run(new float[model.InputShape.Size], 1);
                long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                // The working buffers are within the budget; the output array is the caller's result (itself at most one activation).
                allocated.Should().BeLessThan(4L * bytes.Length + options.MaxBufferBytes + output.Length * sizeof(float) + (256 << 10), $"case {cases} allocated {allocated} bytes");
                SparseModel again = SparseModel.Read(model.ToBytes(), "round trip", options);
                again.Describe().Should().Be(model.Describe(), $"case {cases} round-trips");
                again.Run(new float[model.InputShape.Size], 1).Should().Equal(output, $"case {cases} round-trips");
                loaded++;
            }
            catch (SparseModelFormatException e)
            {
                if (repaired && !e.Message.Contains("checksum")) refusedByParser++;
                (GC.GetAllocatedBytesForCurrentThread() - before).Should().BeLessThan(4L * bytes.Length + (256 << 10), $"refusing case {cases}");
            }
            catch (Exception e) when (e is not Xunit.Sdk.XunitException)
            {
                throw new Xunit.Sdk.XunitException($"Case {cases}: {e.GetType().Name}: {e.Message}\n{Convert.ToBase64String(bytes)}");
            }
            if (clock.Elapsed > TimeSpan.FromSeconds(20)) break;
        }
        cases.Should().BeGreaterThan(500);
        loaded.Should().BeGreaterThan(10, "mutations of weight values with a repaired checksum are valid models");
        refusedByParser.Should().BeGreaterThan(cases / 10, "with the checksum repaired, the parser's own checks must catch the damage");
    }

}
