using Pruning.Optimizers;
using Pruning.Scheduling;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Optimizers;

/// <summary>The Scalar-safe optimizers against TorchSharp's own: bit for bit, state for state, file for file.</summary>
[Collection(TorchCollection.Name)]
public sealed class SafeOptimTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pruning-optim-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string> Kinds() =>
    [
        "adam", "adam-amsgrad-decay-maximize", "adamw", "adamw-amsgrad", "sgd", "sgd-momentum-dampening", "sgd-nesterov-decay", "sgd-maximize",
    ];

    /// <summary>TorchSharp's optimizer (<paramref name="safe"/> false) or ours, configured alike.</summary>
    private static optim.Optimizer Make(string kind, nn.Module model, bool safe)
    {
        var p = model.parameters();
        return (kind, safe) switch
        {
            ("adam", false) => torch.optim.Adam(p, 0.01),
            ("adam", true) => SafeOptim.Adam(p, 0.01),
            ("adam-amsgrad-decay-maximize", false) => torch.optim.Adam(p, 0.01, weight_decay: 0.05, amsgrad: true, maximize: true),
            ("adam-amsgrad-decay-maximize", true) => SafeOptim.Adam(p, 0.01, weight_decay: 0.05, amsgrad: true, maximize: true),
            ("adamw", false) => torch.optim.AdamW(p, 0.01, weight_decay: 0.1),
            ("adamw", true) => SafeOptim.AdamW(p, 0.01, weight_decay: 0.1),
            ("adamw-amsgrad", false) => torch.optim.AdamW(p, 0.02, beta1: 0.8, beta2: 0.99, eps: 1e-6, weight_decay: 0.01, amsgrad: true),
            ("adamw-amsgrad", true) => SafeOptim.AdamW(p, 0.02, beta1: 0.8, beta2: 0.99, eps: 1e-6, weight_decay: 0.01, amsgrad: true),
            ("sgd", false) => torch.optim.SGD(p, 0.05),
            ("sgd", true) => SafeOptim.SGD(p, 0.05),
            ("sgd-momentum-dampening", false) => torch.optim.SGD(p, 0.05, momentum: 0.9, dampening: 0.1),
            ("sgd-momentum-dampening", true) => SafeOptim.SGD(p, 0.05, momentum: 0.9, dampening: 0.1),
            ("sgd-nesterov-decay", false) => torch.optim.SGD(p, 0.05, momentum: 0.9, weight_decay: 0.01, nesterov: true),
            ("sgd-nesterov-decay", true) => SafeOptim.SGD(p, 0.05, momentum: 0.9, weight_decay: 0.01, nesterov: true),
            ("sgd-maximize", false) => torch.optim.SGD(p, 0.01, maximize: true),
            ("sgd-maximize", true) => SafeOptim.SGD(p, 0.01, maximize: true),
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
        };
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Training_is_bit_identical_to_TorchSharps_optimizer(string kind)
    {
        var theirs = TestModels.Mlp(11);
        var ours = TestModels.Mlp(11);
        var theirOptimizer = Make(kind, theirs, safe: false);
        var ourOptimizer = Make(kind, ours, safe: true);
        for (int step = 0; step < 25; step++)
        {
            TestModels.TrainStep(theirs, theirOptimizer, step).Should().Be(TestModels.TrainStep(ours, ourOptimizer, step), $"step {step}");
        }
        foreach (var ((name, a), (_, b)) in theirs.named_parameters().Zip(ours.named_parameters()))
            TestModels.Values(b).Should().Equal(TestModels.Values(a), name);
        var theirState = ((OptimizerHelper)theirOptimizer).state_dict().State;
        var ourState = ((OptimizerHelper)ourOptimizer).state_dict().State;
        ourState.Select(s => s.GetType()).Should().Equal(theirState.Select(s => s.GetType()), "the state has TorchSharp's own types");
        ourOptimizer.GetType().Name.Should().Be(theirOptimizer.GetType().Name, "TorchSharp writes the type's name into saved state, so files load either way");
        for (int i = 0; i < theirState.Count; i++)
            ourState[i].ApproximatelyEquals(theirState[i]).Should().BeTrue($"state {i}");
    }

    [Theory]
    [InlineData("adam")]
    [InlineData("adamw-amsgrad")]
    [InlineData("sgd-momentum-dampening")]
    public void State_saved_by_TorchSharps_optimizer_resumes_in_ours_bit_identically(string kind)
    {
        var reference = TestModels.Mlp(12);
        var referenceOptimizer = Make(kind, reference, safe: false);
        for (int step = 0; step < 20; step++) TestModels.TrainStep(reference, referenceOptimizer, step);

        var first = TestModels.Mlp(12);
        var firstOptimizer = Make(kind, first, safe: false);
        for (int step = 0; step < 10; step++) TestModels.TrainStep(first, firstOptimizer, step);
        string model = Path.Combine(_dir, "model.bin"), state = Path.Combine(_dir, "optimizer.bin");
        first.save(model);
        ((OptimizerHelper)firstOptimizer).save_state_dict(state);

        var resumed = TestModels.Mlp(99);
        var resumedOptimizer = Make(kind, resumed, safe: true);
        resumed.load(model);
        ((OptimizerHelper)resumedOptimizer).load_state_dict(state);
        for (int step = 10; step < 20; step++) TestModels.TrainStep(resumed, resumedOptimizer, step);
        foreach (var ((name, a), (_, b)) in reference.named_parameters().Zip(resumed.named_parameters()))
            TestModels.Values(b).Should().Equal(TestModels.Values(a), name);
    }

    [Fact]
    public void The_pruner_cleans_their_state_as_it_cleans_TorchSharps()
    {
        var model = TestModels.Mlp(13);
        var optimizer = SafeOptim.Adam(model.parameters(), 0.01);
        using var pruner = new GradualPruner(model, new PruningOptions { Schedule = new OneShotSchedule(0.5, 3) }, optimizer);
        for (int step = 0; step < 4; step++)
        {
            TestModels.TrainStep(model, optimizer, step);
            pruner.Step();
        }
        // The update at step 3 ran after that step's optimizer step, so the state of every pruned weight is zero now.
        var state = (TorchSharp.Modules.Adam.State)optimizer.state_dict().State[0];
        using var keep = pruner.Mask("fc1.weight");
        using var pruned = keep.eq(Pruning.Interop.Scalars.Zero);
        state.exp_avg.masked_select(pruned).abs().max().item<float>().Should().Be(0);
    }
}
