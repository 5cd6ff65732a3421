using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

Pruning.Interop.TorchHealth.MakeOpenMpPassive();
Pruning.Interop.TorchHealth.Ensure();   // baselines computed by libtorch must be right: oneDNN off where it is not (docs/reference/installation.md)
if (Pruning.Benchmarks.RemedyCostMode.Wants(args))
    return Pruning.Benchmarks.RemedyCostMode.Run(args);
if (Pruning.Benchmarks.ScalarRaceMode.Wants(args))
    return Pruning.Benchmarks.ScalarRaceMode.Run(args);
if (args is ["quick", ..])
{
    // With kernel options (--rows, --sparsity, --batch, --threads, --json …): the sparse kernels against TorchSharp.
    // --conv: one Conv2d layer, im2col against direct sparse convolution, and TorchSharp's conv2d.
    // --obs: one-shot OBS/SparseGPT, Wanda and magnitude on one d×d Linear (--dims 300,1200,2400 --rows 1024).
    // --models lenet,cnn,mlp4096: whole models, the sparse runtime against ONNX Runtime (dense and channel-shrunk).
    // --gemm: the dense product, our blocked GEMM against our row kernel, OpenBLAS and ONNX Runtime (GFLOP/s).
    if (Pruning.Benchmarks.GemmQuickMode.Wants(args)) Pruning.Benchmarks.GemmQuickMode.Run(args);
    else if (Pruning.Benchmarks.ObsQuickMode.Wants(args)) Pruning.Benchmarks.ObsQuickMode.Run(args);
    else if (Pruning.Benchmarks.ModelsQuickMode.Wants(args)) Pruning.Benchmarks.ModelsQuickMode.Run(args);
    else if (Pruning.Benchmarks.ConvQuickMode.Wants(args)) Pruning.Benchmarks.ConvQuickMode.Run(args);
    else if (Pruning.Benchmarks.KernelQuickMode.Wants(args)) Pruning.Benchmarks.KernelQuickMode.Run(args);
    else Pruning.Benchmarks.QuickMode.Run();
    return 0;
}

// In-process, so that the baseline and the pruned variant are measured side by side in one process (the machines
// are shared and noisy) and TorchSharp's native library is the build output's patched copy.
var config = ManualConfig.Create(DefaultConfig.Instance)
    .AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance).WithWarmupCount(3).WithIterationCount(15));
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
return 0;
