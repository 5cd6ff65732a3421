using System.Globalization;
using Pruning.Sparse;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Sequences;
using Pruning.Sparse.Serialization;
using Pruning.Sparse.Timing;
using Pruning.Sparse.Tuning;

namespace Pruning.Tool;

/// <summary>The tool's commands; each returns its exit code.</summary>
internal static class Commands
{
    /// <summary>Runs a command; a wrong file or argument is one line on standard error and exit code 1.</summary>
    public static int Run(Func<int> command)
    {
        try
        {
            return command();
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    public static int Inspect(string path)
    {
        ModelFile model = ModelFile.Load(path);
        Console.WriteLine(Invariant($"{model.Path}: {model.Kind} file, version {model.Version}, {model.Bytes:N0} bytes"));
        if (model.Sparse is { } sparse)
        {
            Console.WriteLine(Invariant($"input {sparse.InputShape} → output {sparse.OutputShape}; buffers at batch 1: {sparse.BufferBytes(1):N0} bytes"));
            Console.WriteLine(Invariant($"{"#",3}  {"layer",-56} {"output",-16} {"non-zeros",12} {"stored",12} {"bytes",12}"));
            FeatureShape shape = sparse.InputShape;
            for (int i = 0; i < sparse.Layers.Count; i++)
            {
                SparseLayer layer = sparse.Layers[i];
                shape = layer.OutputShape(shape);
                Console.WriteLine(Invariant($"{i,3}  {Clip(layer.Describe(), 56),-56} {shape.ToString(),-16} {ModelFile.NonZeros(layer),12:N0} {layer.StoredParameters,12:N0} {layer.StoredBytes,12:N0}"));
            }
            Console.WriteLine(Invariant($"total: {sparse.Layers.Sum(ModelFile.NonZeros):N0} non-zero weights, {sparse.StoredParameters:N0} stored parameters, {sparse.StoredBytes:N0} bytes of weights"));
        }
        else if (model.Sequence is { } sequence)
        {
            Console.WriteLine(Invariant($"vocabulary {sequence.Embedding.Vocabulary}, {sequence.Layers.Count} recurrent layers, {sequence.Outputs} outputs"));
            Console.WriteLine(Invariant($"  {sequence.Embedding.Describe()}: {sequence.Embedding.Table.NonZeros:N0} non-zeros"));
            foreach (RecurrentLayer layer in sequence.Layers)
                Console.WriteLine(Invariant($"  {layer.Describe()}: {layer.WeightIh.NonZeros + layer.WeightHh.NonZeros:N0} non-zeros, {layer.StoredParameters:N0} stored"));
            Console.WriteLine(Invariant($"  decoder {sequence.Decoder.Describe()}: {sequence.Decoder.Weight.NonZeros:N0} non-zeros, {sequence.Decoder.StoredParameters:N0} stored"));
            Console.WriteLine(Invariant($"total {sequence.StoredParameters:N0} stored parameters"));
        }
        return 0;
    }

    public static int Bench(string path, string batchList, int threads, int runs, int steps)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(threads, "--threads");
        ArgumentOutOfRangeException.ThrowIfLessThan(runs, 1, "--runs");
        ArgumentOutOfRangeException.ThrowIfLessThan(steps, 1, "--steps");
        int[] batches = ParseBatches(batchList);
        ModelFile model = ModelFile.Load(path);
        var progress = new Progress();
        Console.WriteLine(Invariant($"{model.Path}: {Environment.ProcessorCount} cores, {(threads == 0 ? "all" : threads.ToString(CultureInfo.InvariantCulture))} threads, median of {runs} runs, timed side by side with the same weights stored dense"));
        foreach (int batch in batches)
        {
            if (model.Sparse is { } sparse)
            {
                SparseModel dense = FormatTuning.Reencode(sparse, MatrixFormat.Dense);
                Console.WriteLine(Invariant($"batch {batch}:"));
                Console.WriteLine(Invariant($"{"#",5}  {"layer",-56} {"as stored µs",14} {"dense µs",12} {"speed-up",9}"));
                progress.Report($"batch {batch}: layer by layer inside the model");
                var (ours, baseline) = LayerPair(sparse, dense, batch, threads, runs);
                progress.Clear();
                bool[] fused = FusedLayers(sparse, batch);
                for (int i = 0; i < sparse.Layers.Count; i++)
                    Console.WriteLine(fused[i]
                        ? Invariant($"{i,5}  {Clip(sparse.Layers[i].Describe(), 56),-56} {"fused into the layer above",38}")
                        : Invariant($"{i,5}  {Clip(sparse.Layers[i].Describe(), 56),-56} {ours[i] * 1000,14:F1} {baseline[i] * 1000,12:F1} {baseline[i] / ours[i],8:F2}×"));
                Console.WriteLine(Invariant($"{"",5}  {"layout conversions at the input and output",-56} {ours[^1] * 1000,14:F1} {baseline[^1] * 1000,12:F1}"));
                progress.Report($"batch {batch}: whole model");
                var (whole, wholeDense) = TimePair(sparse, dense, batch, threads, runs);
                progress.Clear();
                Console.WriteLine(Invariant($"{"whole",5}  {"",-56} {whole * 1000,14:F1} {wholeDense * 1000,12:F1} {wholeDense / whole,8:F2}×"));
            }
            else if (model.Sequence is { } sequence)
            {
                progress.Report($"batch {batch}: {steps} steps");
                SequenceModel dense = DenseSequence(sequence);
                var random = new Random(1);
                int[] tokens = Enumerable.Range(0, batch * steps).Select(_ => random.Next(sequence.Embedding.Vocabulary)).ToArray();
                var logits = new float[batch * steps * sequence.Outputs];
                double[] medians = LatencyTimer.Medians(
                    [() => sequence.Run(tokens, logits, batch, steps, null, threads), () => dense.Run(tokens, logits, batch, steps, null, threads)],
                    Math.Max(3, runs / 5), runs, StopwatchClock.Instance);
                progress.Clear();
                Console.WriteLine(Invariant($"batch {batch}, {steps} steps: {medians[0] * 1000,10:F1} µs as stored, {medians[1] * 1000,10:F1} µs dense ({medians[1] / medians[0]:F2}×); {batch * steps / medians[0] * 1000:N0} tokens/s"));
            }
        }
        return 0;
    }

    public static int Tune(string path, string output, int batch, bool allFormats, int runs)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1, "--batch");
        ArgumentOutOfRangeException.ThrowIfLessThan(runs, 1, "--runs");
        ModelFile model = ModelFile.Load(path);
        SparseModel sparse = model.Sparse
            ?? throw new ArgumentException($"'{path}' is a sequence model; tuning chooses formats for the layers of a sparse model (.psm). Export a sequence model with the format you want (the format argument of SparseExport.ToSequenceModel).", nameof(path));
        var progress = new Progress();
        progress.Report($"timing every candidate format of {sparse.Layers.Count} layers at batch {batch}");
        FormatTuningResult result = FormatTuning.Tune(sparse, allFormats ? FormatTuning.AllFormats : FormatTuning.ExactFormats, batch, runs);
        progress.Clear();
        Console.Write(result);
        result.Model.Save(output);
        Console.WriteLine(Invariant($"wrote {output} ({new FileInfo(output).Length:N0} bytes)"));
        return 0;
    }

    public static int ToOnnx(string path)
    {
        ModelFile.Load(path);   // a damaged file is reported as such first
        Console.Error.WriteLine(
            $"error: '{path}' holds the runtime's layers, BatchNorms folded and weights in its own formats, not an ONNX graph. Export ONNX from the TorchSharp model: Pruning.Export.OnnxExport.Save(model, inputShape, \"model.onnx\").");
        return 1;
    }

    /// <summary>The top-level layers a convolution before them applies as it stores at this batch (they take no time of their own).</summary>
    private static bool[] FusedLayers(SparseModel model, int batch)
    {
        FeatureShape[] shapes = LayerChains.Shapes(model.Layers, model.InputShape);
        var fused = new bool[model.Layers.Count];
        for (int i = 0; i < model.Layers.Count; i++)
            for (int k = 1; k <= (LayerChains.FusedAfter(model.Layers, shapes, i, batch)?.Layers ?? 0); k++) fused[i + k] = true;
        return fused;
    }

    /// <summary>
    /// Each layer's median time inside the whole model (ms; the last entry is the layout conversions), both models
    /// round-robin on the same input. Inside the model each layer sees the caches the layer before it left, and a layer
    /// a convolution applies as it stores takes no time of its own.
    /// </summary>
    private static (double[] Ours, double[] Baseline) LayerPair(SparseModel ours, SparseModel baseline, int batch, int threads, int runs)
    {
        var (x, y) = Buffers(ours, batch);
        int entries = ours.Layers.Count + 1;
        var samples = new[] { new double[entries][], new double[entries][] };
        for (int e = 0; e < entries; e++) { samples[0][e] = new double[runs]; samples[1][e] = new double[runs]; }
        SparseModel[] models = [ours, baseline];
        for (int run = -Math.Max(3, runs / 5); run < runs; run++)
            for (int m = 0; m < 2; m++)
            {
                var ticks = new long[entries];
                models[m].Run(x, y, batch, threads, ticks);
                if (run < 0) continue;
                for (int e = 0; e < entries; e++) samples[m][e][run] = ticks[e] * 1000.0 / System.Diagnostics.Stopwatch.Frequency;
            }
        double[] Medians(double[][] perEntry) => perEntry.Select(v => { Array.Sort(v); return v[v.Length / 2]; }).ToArray();
        return (Medians(samples[0]), Medians(samples[1]));
    }

    /// <summary>A fixed random input in [−1, 1) for <paramref name="batch"/> samples, and an output buffer.</summary>
    private static (float[] Input, float[] Output) Buffers(SparseModel model, int batch)
    {
        var random = new Random(1);
        float[] x = Enumerable.Range(0, model.InputShape.Size * batch).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        return (x, new float[model.OutputShape.Size * batch]);
    }

    /// <summary>Both models' medians, timed round-robin on the same input.</summary>
    private static (double Ours, double Baseline) TimePair(SparseModel ours, SparseModel baseline, int batch, int threads, int runs)
    {
        var (x, y) = Buffers(ours, batch);
        double[] medians = LatencyTimer.Medians([() => ours.Run(x, y, batch, threads), () => baseline.Run(x, y, batch, threads)],
            Math.Max(3, runs / 5), runs, StopwatchClock.Instance);
        return (medians[0], medians[1]);
    }

    private static SequenceModel DenseSequence(SequenceModel model)
    {
        static WeightMatrix Dense(WeightMatrix m) => WeightMatrix.FromDense(m.ToDense(), m.Rows, m.Cols, MatrixFormat.Dense);
        var layers = model.Layers.Select(l => l switch
        {
            LstmLayer lstm => (RecurrentLayer)new LstmLayer(Dense(lstm.WeightIh), Dense(lstm.WeightHh), lstm.BiasIh, lstm.BiasHh),
            GruLayer gru => new GruLayer(Dense(gru.WeightIh), Dense(gru.WeightHh), gru.BiasIh, gru.BiasHh),
            _ => throw new ArgumentException($"The file holds a recurrent layer of kind {l.GetType().Name}, which this tool does not know."),
        }).ToList();
        return new SequenceModel(new EmbeddingLayer(Dense(model.Embedding.Table)), layers, new LinearLayer(Dense(model.Decoder.Weight), model.Decoder.Bias), model.Options);
    }

    private static int[] ParseBatches(string list)
    {
        var batches = new List<int>();
        foreach (string part in list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int b) || b < 1 || b > 4096)
                throw new ArgumentException($"--batch '{list}': '{part}' is not a batch size from 1 to 4096.");
            batches.Add(b);
        }
        if (batches.Count == 0) throw new ArgumentException("--batch lists no batch size.");
        return [.. batches];
    }

    private static string Clip(string text, int width) => text.Length <= width ? text : text[..(width - 1)] + "…";

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    /// <summary>One status line that rewrites itself on a terminal; nothing when the output is redirected (the results are the lines).</summary>
    private sealed class Progress
    {
        private readonly bool _terminal = !Console.IsErrorRedirected;
        private int _width;

        public void Report(string status)
        {
            if (!_terminal) return;
            Console.Error.Write($"\r{status.PadRight(_width)}");
            _width = Math.Max(_width, status.Length);
        }

        public void Clear()
        {
            if (!_terminal || _width == 0) return;
            Console.Error.Write($"\r{new string(' ', _width)}\r");
            _width = 0;
        }
    }
}
