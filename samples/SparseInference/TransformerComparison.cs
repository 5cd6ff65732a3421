// A decoder-only transformer language model on the KJV text (the LSTM sample's corpus and vocabulary), trained dense,
// pruned gradually (every Linear of attention and MLP, the embeddings and the decoder), exported, and run by the
// standalone runtime next to TorchSharp: test perplexity (must equal TorchSharp's), a trigram baseline, tokens per
// second when generating (our key/value cache against TorchSharp recomputing the context, which is what a TorchSharp
// module without a cache does, and against ONNX Runtime on the dense model's .onnx, which has no cache either), and
// greedy generation from one prompt (must give the same tokens). ONNX Runtime's logits must match TorchSharp's.
using Microsoft.ML.OnnxRuntime;
using Pruning;
using Pruning.Export;
using Pruning.Optimizers;
using Pruning.Samples;
using Pruning.Samples.Language;
using Pruning.Scheduling;
using Pruning.Sparse.Matrices;
using Pruning.Sparse.Sequences;
using TorchSharp;
using static TorchSharp.torch;

internal static class TransformerComparison
{
    private const int Layers = 2, Heads = 4, Batch = 20, Generated = 20, Streams = TransformerTraining.Streams;
    private const double Tolerance = 1e-4;
    private static readonly string Prompt = "in the beginning god created the heaven and the earth";

    /// <summary>Adds one summary row per sparsity; returns 1 when a runtime perplexity or a generated text differs from TorchSharp's.</summary>
    public static int Run(Settings s, List<Dictionary<string, object>> rows)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        KjvCorpus corpus = s.Corpus is null ? KjvCorpus.LoadFromBibleCommand() : KjvCorpus.Parse(File.ReadLines(s.Corpus));
        int dimension = s.Quick ? 64 : 128, context = s.Quick ? 32 : 64;
        double fraction = s.Quick ? 0.03 : 0.25, dropout = s.Quick ? 0.0 : 0.1;
        int denseEpochs = s.Quick ? 1 : 3, fineTuneEpochs = s.Quick ? 1 : 2;
        double[] sparsities = s.Quick ? [0, 0.9] : [0, 0.5, 0.7, 0.9];
        var vocabulary = Vocabulary.Build(corpus.Train, 10_000);
        long[] train = vocabulary.Encode(corpus.Train);
        train = train[..(int)(train.Length * fraction)];
        long[] test = vocabulary.Encode(corpus.Test);
        if (s.Quick) test = test[..5_000];
        double trigram = new TrigramModel(train, vocabulary.Count).Perplexity(test);
        Console.WriteLine($"KJV transformer LM: vocabulary {vocabulary.Count:N0}, {Layers} pre-LN blocks of d={dimension}, {Heads} heads, MLP {4 * dimension}, context {context}; "
            + $"{train.Length:N0} training tokens, {test.Length:N0} test tokens; dense {denseEpochs} epoch(s), then each sparsity pruned gradually over {fineTuneEpochs} epoch(s) of fine-tuning from it.");
        Console.WriteLine($"Trigram baseline (interpolated absolute discounting, same training tokens): test perplexity {trigram:F2}.");

        torch.manual_seed(s.Seed);
        var dense = new TransformerLanguageModel(vocabulary.Count, dimension, Heads, Layers, context, dropout);
        using Tensor data = LstmLanguageModel.Batchify(train, Batch);
        var denseOptimizer = SafeOptim.Adam(dense.parameters(), 1e-3);
        for (int epoch = 0; epoch < denseEpochs; epoch++) TransformerTraining.TrainEpoch(dense, data, denseOptimizer, null, $"transformer epoch {epoch + 1}");
        Console.WriteLine($"Dense model trained in {clock.Elapsed.TotalSeconds:F0} s.");
        var options = new TransformerExportOptions { Heads = Heads };
        // ONNX Runtime runs the dense model's export (no cache in the graph: it recomputes the context, as TorchSharp does).
        string onnxPath = Path.Combine(s.Out, "kjv-transformer-dense.onnx");
        OnnxExport.Save(SparseExport.ToTransformerModel(dense, options), onnxPath);
        using var ort = new InferenceSession(onnxPath, new SessionOptions
        {
            IntraOpNumThreads = Environment.ProcessorCount, InterOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        });
        double? ortDifference = null;

        int code = 0;
        foreach (double sparsity in sparsities)
        {
            TransformerLanguageModel model = sparsity == 0 ? dense : GradualFineTune.Prune(
                new TransformerLanguageModel(vocabulary.Count, dimension, Heads, Layers, context, dropout), dense, sparsity, (data.shape[1] - 1) / context, fineTuneEpochs, 5e-4,
                (m, optimizer, pruner, e) => TransformerTraining.TrainEpoch(m, data, optimizer, pruner, $"pruning to {sparsity:P0}, epoch {e + 1}"));
            model.eval();
            string path = Path.Combine(s.Out, $"kjv-transformer-{sparsity * 100:F0}.ptf");
            SparseExport.SaveTransformerModel(model, path, options);
            TransformerModel sparse = TransformerModel.Load(path);
            // The same weights stored dense on the runtime: what the sparse formats buy beyond leaving TorchSharp.
            TransformerModel denseRuntime = SparseExport.ToTransformerModel(model, options, MatrixFormat.Dense);

            double torchPerplexity = TransformerTraining.Perplexity(model, test);
            double runtimePerplexity = RuntimePerplexity(sparse, test, context);
            double difference = Math.Abs(runtimePerplexity - torchPerplexity) / torchPerplexity;
            if (sparsity == 0)
            {
                ortDifference = OrtDifference(ort, model, test, context);
                if (!(ortDifference <= Tolerance)) code = 1;
                Console.WriteLine($"ONNX Runtime on the exported .onnx: logits within {ortDifference:E1} of TorchSharp's, relative to their range (tolerance {Tolerance:E0}).");
            }
            var speed = new Dictionary<int, (double Ours, double Dense, double Theirs, double Ort)>();
            foreach (int batch in new[] { 1, 16 }) speed[batch] = TokensPerSecond(model, sparse, denseRuntime, batch == 1 ? ort : null, batch, vocabulary.Count);
            int[] prompt = KjvCorpus.Words(Prompt).Select(w => vocabulary[w]).ToArray();
            int[] ours = GenerateRuntime(sparse, prompt), theirs = GenerateTorch(model, prompt);
            bool identical = ours.SequenceEqual(theirs);
            if (difference > Tolerance || !identical) code = 1;

            Console.WriteLine();
            Console.WriteLine($"── {sparsity:P0} sparse ── {sparse.Describe().Split('\n')[^1]}, file {new FileInfo(path).Length:N0} B");
            Console.WriteLine($"test perplexity: runtime {runtimePerplexity:F4}, TorchSharp {torchPerplexity:F4} (relative difference {difference:E1}; tolerance {Tolerance:E0}); trigram {trigram:F2}");
            foreach (var (batch, (o, d, t, r)) in speed)
                Console.WriteLine($"  batch {batch,2}: runtime with cache {o,10:N0} tokens/s   runtime, dense weights {d,10:N0}   TorchSharp dense, recomputing {t,10:N0}   → {o / t:F2}× TorchSharp, {o / d:F2}× dense runtime"
                    + (r > 0 ? $"; ONNX Runtime dense, recomputing {r:N0} → {o / r:F2}×" : ""));
            Console.WriteLine($"  greedy from \"{Prompt}\" ({(identical ? "identical tokens" : "TOKENS DIFFER")}):");
            Console.WriteLine($"    runtime:    {string.Join(' ', ours.Select(i => vocabulary.Words[i]))}");
            Console.WriteLine($"    TorchSharp: {string.Join(' ', theirs.Select(i => vocabulary.Words[i]))}");
            rows.Add(new()
            {
                ["model"] = "transformer", ["sparsity"] = sparsity, ["metric_name"] = "perplexity",
                ["torchsharp_metric"] = torchPerplexity, ["runtime_metric"] = runtimePerplexity, ["trigram_metric"] = trigram,
                ["greedy_identical"] = identical,
                ["batch1_speedup"] = speed[1].Ours / speed[1].Theirs, ["batch16_speedup"] = speed[16].Ours / speed[16].Theirs,
                ["ort_batch1_speedup"] = speed[1].Ours / speed[1].Ort, ["ort_max_relative_difference"] = ortDifference!,
                ["batch1_speedup_vs_dense_runtime"] = speed[1].Ours / speed[1].Dense,
                ["tokens_per_second"] = speed.ToDictionary(kv => kv.Key.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    kv => new { runtime = kv.Value.Ours, runtime_dense_weights = kv.Value.Dense, torchsharp = kv.Value.Theirs, onnxruntime = kv.Value.Ort > 0 ? kv.Value.Ort : (double?)null }),
                ["dimension"] = dimension, ["context"] = context, ["file_bytes"] = new FileInfo(path).Length, ["seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 1),
            });
        }
        return code;
    }

    private static double RuntimePerplexity(TransformerModel model, long[] tokens, int context)
    {
        double total = 0;
        long count = 0;
        foreach (var (x, y, n) in Perplexity.Windows(tokens, Streams, context))
        {
            total += Perplexity.TotalNll(model.Run(x, Streams, n), y, model.Outputs);
            count += y.Length;
        }
        return Perplexity.FromTotalNll(total, count);
    }

    /// <summary>
    /// Tokens per second when every one of <paramref name="batch"/> sequences advances one token at the middle of the
    /// context: the runtime with its cache holding the earlier half (cut back before each call), the runtime with dense
    /// weights, TorchSharp running the module over the whole prefix (no cache), and at batch 1 ONNX Runtime running the
    /// dense export over it; medians of calls timed in blocks, in one process.
    /// </summary>
    private static (double Ours, double Dense, double Theirs, double Ort) TokensPerSecond(TransformerLanguageModel model, TransformerModel sparse, TransformerModel dense,
        InferenceSession? ort, int batch, int vocabulary)
    {
        var random = new Random(batch);
        int half = model.Context / 2;
        int[] prefix = Enumerable.Range(0, batch * half).Select(_ => random.Next(vocabulary)).ToArray();
        int[] next = Enumerable.Range(0, batch).Select(_ => random.Next(vocabulary)).ToArray();
        var logits = new float[batch * sparse.Outputs];
        AttentionCache cache = sparse.NewCache(batch), denseCache = dense.NewCache(batch);
        sparse.Run(prefix, batch, half, cache);
        dense.Run(prefix, batch, half, denseCache);
        long[] whole = new long[batch * (half + 1)];
        for (int n = 0; n < batch; n++)
        {
            for (int t = 0; t < half; t++) whole[n * (half + 1) + t] = prefix[n * half + t];
            whole[n * (half + 1) + half] = next[n];
        }
        using Tensor x = torch.tensor(whole, [batch, half + 1]);
        Action ours = () => { cache.Truncate(half); sparse.Step(next, logits, cache); };
        Action oursDense = () => { denseCache.Truncate(half); dense.Step(next, logits, denseCache); };
        Action theirs = () =>
        {
            using var scope = torch.NewDisposeScope();
            using var _ = torch.no_grad();
            model.call(x);
        };
        List<Action> variants = [ours, oursDense, theirs];
        using var ortTokens = OrtValue.CreateTensorValueFromMemory(whole, [batch, half + 1]);
        using var ortLogits = OrtValue.CreateTensorValueFromMemory(new float[batch * (half + 1) * vocabulary], [batch, half + 1, vocabulary]);
        using var binding = ort?.CreateIoBinding();
        using var run = new RunOptions();
        if (ort is not null && binding is not null)
        {
            binding.BindInput(ort.InputNames[0], ortTokens);
            binding.BindOutput(ort.OutputNames[0], ortLogits);
            variants.Add(() => ort.RunWithBinding(run, binding));
        }
        // In blocks, not interleaved: ONNX Runtime's workers spin after a call and would slow whatever ran next.
        double[] ms = Measure.Blocks(variants, rounds: 10);
        return (batch / ms[0] * 1000, batch / ms[1] * 1000, batch / ms[2] * 1000, ort is null ? 0 : batch / ms[3] * 1000);
    }

    /// <summary>The largest difference between ONNX Runtime's and TorchSharp's logits on the first test windows, relative to TorchSharp's logit range.</summary>
    private static double OrtDifference(InferenceSession ort, TransformerLanguageModel model, long[] tokens, int context)
    {
        double worst = 0;
        foreach (var (x, _, n) in Perplexity.Windows(tokens, Streams, context).Take(3))
        {
            long[] ids = x.Select(t => (long)t).ToArray();
            using var value = OrtValue.CreateTensorValueFromMemory(ids, [Streams, n]);
            using var outputs = ort.Run(new RunOptions(), [ort.InputNames[0]], [value], ort.OutputNames);
            float[] theirs = outputs[0].GetTensorDataAsSpan<float>().ToArray();
            float[] torchLogits;
            using (torch.no_grad())
            using (Tensor logits = model.call(torch.tensor(ids, [Streams, n])))
                torchLogits = logits.contiguous().data<float>().ToArray();
            double range = torchLogits.Max() - torchLogits.Min();
            for (int i = 0; i < theirs.Length; i++) worst = Math.Max(worst, Math.Abs(theirs[i] - (double)torchLogits[i]) / range);
        }
        return worst;
    }

    /// <summary>Greedy continuation of <paramref name="prompt"/> on the runtime, with the cache: <see cref="Generated"/> tokens.</summary>
    private static int[] GenerateRuntime(TransformerModel model, int[] prompt)
    {
        AttentionCache cache = model.NewCache(1);
        float[] logits = model.Run(prompt, 1, prompt.Length, cache);
        var generated = new List<int> { Measure.ArgMax(logits.AsSpan((prompt.Length - 1) * model.Outputs, model.Outputs)) };
        var step = new float[model.Outputs];
        while (generated.Count < Generated && cache.Length < model.Context)
        {
            model.Step([generated[^1]], step, cache);
            generated.Add(Measure.ArgMax(step));
        }
        return [.. generated];
    }

    /// <summary>The same greedy continuation with TorchSharp, the whole sequence so far recomputed for each token.</summary>
    private static int[] GenerateTorch(TransformerLanguageModel model, int[] prompt)
    {
        using var _ = torch.no_grad();
        var sequence = prompt.Select(t => (long)t).ToList();
        var generated = new List<int>();
        while (generated.Count < Generated && sequence.Count <= model.Context)
        {
            using var scope = torch.NewDisposeScope();
            Tensor logits = model.call(torch.tensor(sequence.ToArray(), [1, sequence.Count]));
            int token = Measure.ArgMax(logits[0, sequence.Count - 1].contiguous().data<float>().ToArray());
            generated.Add(token);
            sequence.Add(token);
        }
        return [.. generated];
    }
}
