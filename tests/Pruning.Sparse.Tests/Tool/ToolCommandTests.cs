using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Sequences;
using Pruning.Sparse.Serialization;
using Pruning.Tool;

namespace Pruning.Sparse.Tests.Tool;

/// <summary>The pruning tool's commands, run in process on files written here; their output and exit codes.</summary>
[Collection(ConsoleCollection.Name)]
public sealed class ToolCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pruning-tool-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Linear 8→6 with 12 of 48 weights non-zero, ReLU, Linear 6→3 dense.</summary>
    private string Model()
    {
        float[] w1 = new float[48];
        for (int i = 0; i < 48; i += 4) w1[i] = 0.5f + i;
        var model = new SparseModel(new FeatureShape(8),
        [
            new LinearLayer(WeightMatrix.FromDense(w1, 6, 8, MatrixFormat.Csr), new float[6]),
            new ActivationLayer(ActivationKind.ReLU),
            new LinearLayer(WeightMatrix.FromDense(Reference.Random(18, 3), 3, 6, MatrixFormat.Dense), Reference.Random(3, 4)),
        ]);
        string path = Path.Combine(_dir, "model.psm");
        model.Save(path);
        return path;
    }

    private static (int Code, string Out, string Err) Capture(Func<int> command)
    {
        TextWriter stdout = Console.Out, stderr = Console.Error;
        var (o, e) = (new StringWriter(), new StringWriter());
        Console.SetOut(o);
        Console.SetError(e);
        try
        {
            return (Commands.Run(command), o.ToString(), e.ToString());
        }
        finally
        {
            Console.SetOut(stdout);
            Console.SetError(stderr);
        }
    }

    [Fact]
    public void Inspect_lists_each_layer_with_its_format_non_zeros_and_bytes_and_the_file_version()
    {
        string path = Model();
        var (code, output, _) = Capture(() => Commands.Inspect(path));
        code.Should().Be(0);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        lines[0].Should().Be($"{path}: sparse model file, version 1, {new FileInfo(path).Length:N0} bytes");
        lines[1].Should().StartWith("input [8] → output [3]");
        lines[3].Should().MatchRegex(@"^\s+0\s+Linear 8→6 \(CSR, 75\.0 % sparse\)\s+\[6\]\s+12\s+18\s+");
        lines[5].Should().MatchRegex(@"^\s+2\s+Linear 6→3 \(dense, 0\.0 % zeros\)\s+\[3\]\s+18\s+21\s+84\s*$");
        lines[^1].Should().StartWith("total: 30 non-zero weights, 39 stored parameters");
    }

    [Fact]
    public void Bench_times_every_layer_and_the_whole_model_at_each_batch_against_dense()
    {
        string path = Model();
        var (code, output, _) = Capture(() => Commands.Bench(path, "1,4", threads: 1, runs: 3, steps: 1));
        code.Should().Be(0);
        output.Should().Contain("batch 1:").And.Contain("batch 4:");
        output.Split('\n').Count(l => l.StartsWith("whole", StringComparison.Ordinal)).Should().Be(2);
        output.Split('\n').Count(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^\s+\d\s+Linear 8→6 \(CSR.*\d+\.\d\s+\d+\.\d\s+\d+\.\d\d×$")).Should().Be(2);
    }

    [Fact]
    public void Bench_shows_the_activation_and_pooling_a_convolution_applies_as_it_stores_as_fused()
    {
        string path = Path.Combine(_dir, "cnn.psm");
        new SparseModel(new Pruning.Sparse.Layers.FeatureShape(1, 8, 8),
        [
            Pruning.Sparse.Layers.Conv2dLayer.FromDense(Reference.Sparse(3, 9, 0.5, 1), 3, Reference.Random(3, 2), 1, (3, 3), padding: (1, 1)),
            new Pruning.Sparse.Layers.ActivationLayer(Pruning.Sparse.Layers.ActivationKind.ReLU),
            new Pruning.Sparse.Layers.Pool2dLayer(Pruning.Sparse.Layers.PoolKind.Max, (2, 2)),
            new Pruning.Sparse.Layers.FlattenLayer(),
        ]).Save(path);
        var (code, output, _) = Capture(() => Commands.Bench(path, "2", threads: 1, runs: 3, steps: 1));
        code.Should().Be(0);
        string[] lines = output.Split('\n');
        lines.Count(l => l.EndsWith("fused into the layer above", StringComparison.Ordinal)).Should().Be(2);
        lines.Should().Contain(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^\s+0\s+Conv2d 1→3 .*\d+\.\d\s+\d+\.\d\s+\d+\.\d\d×$"));
        lines.Should().Contain(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^\s+3\s+Flatten .*\d+\.\d\s+\d+\.\d\s+\d+\.\d\d×$"));
    }

    [Fact]
    public void Tune_writes_a_model_that_loads_and_computes_the_same()
    {
        string path = Model(), tuned = Path.Combine(_dir, "tuned.psm");
        var (code, output, _) = Capture(() => Commands.Tune(path, tuned, batch: 2, allFormats: false, runs: 3));
        code.Should().Be(0);
        output.Should().Contain("layer 0:").And.Contain($"wrote {tuned}");
        SparseModel original = SparseModel.Load(path), result = SparseModel.Load(tuned);
        float[] x = Reference.Random(16, 5);
        result.Run(x, 2).Should().Equal(original.Run(x, 2));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_sequence_model_is_inspected_and_timed_against_its_weights_dense_and_refused_by_tune(bool gru)
    {
        SequenceModel model = Sequences.SequenceModelTests.Lstm(seed: 3, gru);
        string path = Path.Combine(_dir, "lm.psq");
        model.Save(path);

        var (code, output, _) = Capture(() => Commands.Inspect(path));
        code.Should().Be(0);
        output.Should().StartWith($"{path}: sequence model file, version ").And.Contain("vocabulary 20, 2 recurrent layers, 20 outputs");
        output.Split('\n').Count(l => l.StartsWith(gru ? "  GRU" : "  LSTM", StringComparison.Ordinal)).Should().Be(2);
        output.Should().Contain($"total {model.StoredParameters:N0} stored parameters");

        (code, output, _) = Capture(() => Commands.Bench(path, "1,3", threads: 1, runs: 3, steps: 4));
        code.Should().Be(0);
        output.Split('\n').Count(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^batch [13], 4 steps: .* µs as stored, .* µs dense \(\d+\.\d\d×\); [\d,]+ tokens/s$")).Should().Be(2);

        var refused = Capture(() => Commands.Tune(path, Path.Combine(_dir, "t.psm"), 1, false, 3));
        refused.Code.Should().Be(1);
        refused.Err.Should().Contain("is a sequence model");
        File.Exists(Path.Combine(_dir, "t.psm")).Should().BeFalse();
    }

    [Fact]
    public void A_file_that_is_not_a_model_or_a_bad_argument_is_one_error_line_and_exit_code_1()
    {
        string text = Path.Combine(_dir, "notes.txt");
        File.WriteAllText(text, "not a model");
        var (code, output, error) = Capture(() => Commands.Inspect(text));
        (code, output).Should().Be((1, ""));
        error.Should().Be($"error: '{text}' is not a model file of Pruning.Sparse: a .psm file starts with PRNSPMDL, a .psq file with PRNSPSEQ.{Environment.NewLine}");

        var damaged = File.ReadAllBytes(Model());
        damaged[^1] ^= 0xFF;   // the CRC no longer matches
        string broken = Path.Combine(_dir, "broken.psm");
        File.WriteAllBytes(broken, damaged);
        Capture(() => Commands.Inspect(broken)).Code.Should().Be(1);

        Capture(() => Commands.Bench(Model(), "1,x", 1, 3, 1)).Err.Should().Contain("--batch '1,x': 'x' is not a batch size");
        Capture(() => Commands.ToOnnx(Model())).Should().Match<(int Code, string Out, string Err)>(r => r.Code == 1 && r.Err.Contains("OnnxExport"));
    }
}

/// <summary>Tests that swap the process's console run one at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ConsoleCollection
{
    public const string Name = "console";
}
