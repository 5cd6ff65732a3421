// The KJV word-level LSTM language model of samples/LargeSparseVsSmallDense, trained dense, pruned gradually to 50, 80
// and 90 % (fine-tuning from the dense model), exported, and run by the standalone sparse runtime next to TorchSharp:
// test perplexity (must equal TorchSharp's), tokens per second at batch 1, 16 and 64 (one token per sequence per
// step, state carried, as generation runs), and greedy generation from one prompt (must give the same tokens).
using Pruning;
using Pruning.Export;
using Pruning.Optimizers;
using Pruning.Samples.Language;
using Pruning.Scheduling;
using Pruning.Sparse.Sequences;
using TorchSharp;
using static TorchSharp.torch;

internal static class LstmComparison
{
    private const int Layers = 2, Batch = 20, Steps = 35, Generated = 20;
    private const double Tolerance = 1e-4;
    private static readonly string Prompt = "in the beginning god created the heaven and the earth";

    /// <summary>Adds one summary row per sparsity; returns 1 when a runtime perplexity or a generated text differs from TorchSharp's.</summary>
    public static int Run(Settings s, List<Dictionary<string, object>> rows)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        KjvCorpus corpus = s.Corpus is null ? KjvCorpus.LoadFromBibleCommand() : KjvCorpus.Parse(File.ReadLines(s.Corpus));
        int hidden = s.Quick ? 64 : 256;
        double fraction = s.Quick ? 0.03 : 0.25, dropout = s.Quick ? 0.1 : 0.3;
        int denseEpochs = s.Quick ? 1 : 2, fineTuneEpochs = s.Quick ? 1 : 2;
        double[] sparsities = s.Quick ? [0, 0.9] : [0, 0.5, 0.8, 0.9];
        var vocabulary = Vocabulary.Build(corpus.Train, 10_000);
        long[] train = vocabulary.Encode(corpus.Train);
        train = train[..(int)(train.Length * fraction)];
        long[] test = vocabulary.Encode(corpus.Test);
        if (s.Quick) test = test[..5_000];
        Console.WriteLine($"KJV LSTM LM: vocabulary {vocabulary.Count:N0}, {Layers} layers of {hidden}, {train.Length:N0} training tokens, {test.Length:N0} test tokens; dense {denseEpochs} epoch(s), then each sparsity pruned gradually over {fineTuneEpochs} epoch(s) of fine-tuning from it.");

        torch.manual_seed(s.Seed);
        var dense = new LstmLanguageModel(vocabulary.Count, hidden, Layers, dropout);
        using Tensor data = LstmLanguageModel.Batchify(train, Batch);
        var denseOptimizer = SafeOptim.Adam(dense.parameters(), 2e-3);
        for (int epoch = 0; epoch < denseEpochs; epoch++) dense.TrainEpoch(data, Steps, denseOptimizer, null);
        Console.WriteLine($"Dense model trained in {clock.Elapsed.TotalSeconds:F0} s.");

        int code = 0;
        foreach (double sparsity in sparsities)
        {
            LstmLanguageModel model = sparsity == 0 ? dense : GradualFineTune.Prune(
                new LstmLanguageModel(vocabulary.Count, hidden, Layers, dropout), dense, sparsity, (data.shape[1] - 1) / Steps, fineTuneEpochs, 1e-3,
                (m, optimizer, pruner, _) => m.TrainEpoch(data, Steps, optimizer, pruner));
            model.eval();
            string path = Path.Combine(s.Out, $"kjv-lstm-{sparsity * 100:F0}.psq");
            SparseExport.SaveSequenceModel(model, path);
            SequenceModel sparse = SequenceModel.Load(path);
            // The same weights stored dense on the runtime: what the sparse formats buy beyond leaving TorchSharp.
            SequenceModel denseRuntime = SparseExport.ToSequenceModel(model, Pruning.Sparse.Matrices.MatrixFormat.Dense);

            double torchPerplexity = model.Perplexity(test, Steps);
            double runtimePerplexity = RuntimePerplexity(sparse, test);
            double difference = Math.Abs(runtimePerplexity - torchPerplexity) / torchPerplexity;
            // Compressed values: every matrix (embedding, LSTM, decoder) as CSR with half or int8 values.
            double halfPerplexity = RuntimePerplexity(SparseExport.ToSequenceModel(model, Pruning.Sparse.Matrices.MatrixFormat.CsrFloat16), test);
            double int8Perplexity = RuntimePerplexity(SparseExport.ToSequenceModel(model, Pruning.Sparse.Matrices.MatrixFormat.CsrInt8), test);
            var speed = new Dictionary<int, (double Ours, double Dense, double Theirs)>();
            foreach (int batch in new[] { 1, 16, 64 }) speed[batch] = TokensPerSecond(model, sparse, denseRuntime, batch, vocabulary.Count);
            int[] prompt = KjvCorpus.Words(Prompt).Select(w => vocabulary[w]).ToArray();
            int[] ours = GenerateRuntime(sparse, prompt), theirs = GenerateTorch(model, prompt);
            bool identical = ours.SequenceEqual(theirs);
            if (difference > Tolerance || !identical) code = 1;

            Console.WriteLine();
            Console.WriteLine($"── {sparsity:P0} sparse ── {sparse.Describe().Split('\n')[^1]}, file {new FileInfo(path).Length:N0} B");
            Console.WriteLine($"test perplexity: sparse runtime {runtimePerplexity:F4}, TorchSharp {torchPerplexity:F4} (relative difference {difference:E1}; tolerance {Tolerance:E0})");
            Console.WriteLine($"  with compressed values: fp16 {halfPerplexity:F4} ({(halfPerplexity / runtimePerplexity - 1) * 100:+0.000;-0.000;0.000} %), int8 {int8Perplexity:F4} ({(int8Perplexity / runtimePerplexity - 1) * 100:+0.000;-0.000;0.000} %)");
            foreach (var (batch, (o, d, t)) in speed)
                Console.WriteLine($"  batch {batch,2}: sparse runtime {o,10:N0} tokens/s   runtime, dense weights {d,10:N0}   TorchSharp dense {t,10:N0}   → {o / t:F2}× TorchSharp, {o / d:F2}× dense runtime");
            Console.WriteLine($"  greedy from \"{Prompt}\" ({(identical ? "identical tokens" : "TOKENS DIFFER")}):");
            Console.WriteLine($"    sparse runtime: {string.Join(' ', ours.Select(i => vocabulary.Words[i]))}");
            Console.WriteLine($"    TorchSharp:     {string.Join(' ', theirs.Select(i => vocabulary.Words[i]))}");
            rows.Add(new()
            {
                ["model"] = "lstm", ["sparsity"] = sparsity, ["metric_name"] = "perplexity",
                ["torchsharp_metric"] = torchPerplexity, ["runtime_metric"] = runtimePerplexity,
                ["fp16_metric"] = halfPerplexity, ["int8_metric"] = int8Perplexity,
                ["batch1_speedup"] = speed[1].Ours / speed[1].Theirs, ["batch16_speedup"] = speed[16].Ours / speed[16].Theirs,
                ["batch64_speedup"] = speed[64].Ours / speed[64].Theirs, ["greedy_identical"] = identical,
                ["batch1_speedup_vs_dense_runtime"] = speed[1].Ours / speed[1].Dense,
                ["tokens_per_second"] = speed.ToDictionary(kv => kv.Key.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    kv => new { runtime = kv.Value.Ours, runtime_dense_weights = kv.Value.Dense, torchsharp = kv.Value.Theirs }),
                ["hidden"] = hidden, ["file_bytes"] = new FileInfo(path).Length, ["seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 1),
            });
        }
        return code;
    }

    /// <summary>Perplexity on the sparse runtime, read exactly as <see cref="LstmLanguageModel.Perplexity"/> reads it.</summary>
    private static double RuntimePerplexity(SequenceModel model, long[] tokens)
    {
        const int streams = 10;
        RecurrentState state = model.NewState(streams);
        double total = 0;
        long count = 0;
        foreach (var (x, y, n) in Perplexity.Windows(tokens, streams, Steps))
        {
            total += Perplexity.TotalNll(model.Run(x, streams, n, state), y, model.Outputs);
            count += y.Length;
        }
        return Perplexity.FromTotalNll(total, count);
    }

    /// <summary>
    /// Tokens per second when every one of <paramref name="batch"/> sequences advances one token per call, state
    /// carried: the sparse runtime, the runtime with the weights stored dense, TorchSharp; interleaved in one process.
    /// </summary>
    private static (double Ours, double Dense, double Theirs) TokensPerSecond(LstmLanguageModel model, SequenceModel sparse, SequenceModel dense, int batch, int vocabulary)
    {
        var random = new Random(batch);
        int[] tokens = Enumerable.Range(0, batch).Select(_ => random.Next(vocabulary)).ToArray();
        var logits = new float[batch * sparse.Outputs];
        RecurrentState state = sparse.NewState(batch), denseState = dense.NewState(batch);
        using Tensor x = torch.tensor(tokens.Select(t => (long)t).ToArray(), [batch, 1]);
        (Tensor H, Tensor C) torchState;
        using (torch.no_grad())
        {
            var (_, first) = model.call(x, null);
            torchState = first;
        }
        Action ours = () => sparse.Step(tokens, logits, state);
        Action oursDense = () => dense.Step(tokens, logits, denseState);
        Action theirs = () =>
        {
            using var scope = torch.NewDisposeScope();
            using var _ = torch.no_grad();
            model.call(x, torchState);
        };
        int runs = batch == 64 ? 60 : 200;
        double[] ms = Measure.Interleaved([ours, oursDense, theirs], warmup: 10, runs);
        torchState.H.Dispose();
        torchState.C.Dispose();
        return (batch / ms[0] * 1000, batch / ms[1] * 1000, batch / ms[2] * 1000);
    }

    /// <summary>Greedy continuation of <paramref name="prompt"/> on the sparse runtime: <see cref="Generated"/> tokens.</summary>
    private static int[] GenerateRuntime(SequenceModel model, int[] prompt)
    {
        RecurrentState state = model.NewState(1);
        float[] logits = model.Run(prompt, 1, prompt.Length, state);
        var generated = new List<int> { Measure.ArgMax(logits.AsSpan((prompt.Length - 1) * model.Outputs, model.Outputs)) };
        var step = new float[model.Outputs];
        while (generated.Count < Generated)
        {
            model.Step([generated[^1]], step, state);
            generated.Add(Measure.ArgMax(step));
        }
        return [.. generated];
    }

    /// <summary>The same greedy continuation with TorchSharp.</summary>
    private static int[] GenerateTorch(LstmLanguageModel model, int[] prompt)
    {
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var (logits, state) = model.call(torch.tensor(prompt.Select(t => (long)t).ToArray(), [1, prompt.Length]), null);
        var generated = new List<int> { Measure.ArgMax(TorchValues(logits[0, prompt.Length - 1])) };
        while (generated.Count < Generated)
        {
            (logits, state) = model.call(torch.tensor(new long[] { generated[^1] }, [1, 1]), state);
            generated.Add(Measure.ArgMax(TorchValues(logits[0, 0])));
        }
        return [.. generated];
    }

    private static float[] TorchValues(Tensor t) => t.contiguous().data<float>().ToArray();
}
