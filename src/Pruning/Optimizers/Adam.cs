using TorchSharp;
using TorchSharp.Modules;
using ParamGroup = TorchSharp.Modules.Adam.ParamGroup;
using State = TorchSharp.Modules.Adam.State;
using static TorchSharp.torch;

namespace Pruning.Optimizers;

/// <summary>
/// TorchSharp's <see cref="TorchSharp.Modules.Adam"/> with every Scalar kept alive until its native call returns.
/// TorchSharp 0.107's own step passes temporary Scalars (β₁, the step size, the hidden α = 1 of <c>add_</c>) whose
/// finalizer can run during the call and crash the process (docs/reference/scalar-race.md). This class is TorchSharp's Adam,
/// with the same name: the same options, the same state (<see cref="TorchSharp.Modules.Adam.State"/>), the same
/// <c>state_dict</c> and files (each loads the other's), and the same arithmetic in the same order, so it trains
/// bit-identically and is a drop-in replacement. Create it with <see cref="SafeOptim.Adam"/>.
/// </summary>
public sealed class Adam : TorchSharp.Modules.Adam
{
    /// <summary>Creates the optimizer; the parameters mean what they mean for TorchSharp's Adam.</summary>
    public Adam(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weight_decay = 0, bool amsgrad = false, bool maximize = false)
        : base(parameters, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize) { }

    /// <summary>Creates the optimizer over parameter groups.</summary>
    public Adam(IEnumerable<ParamGroup> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weight_decay = 0, bool amsgrad = false, bool maximize = false)
        : base(parameters, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize) { }

    /// <summary>One Adam step over every parameter group, exactly as TorchSharp's, with each Scalar held until its native call returns.</summary>
    /// <param name="closure">Re-evaluates the model and returns the loss, as in TorchSharp; may be null.</param>
    /// <returns>The closure's loss, or null without a closure.</returns>
    public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
    {
        var options = (Options)group.Options;
        double beta1 = options.beta1!.Value, beta2 = options.beta2!.Value, weightDecay = options.weight_decay!.Value;
        bool amsgrad = options.amsgrad!.Value, maximize = options.maximize!.Value;
        using Scalar decay = weightDecay.ToScalar();
        using var moments = new AdamMoments(options.LearningRate!.Value, beta1, beta2, options.eps!.Value);
        foreach (Parameter param in group.Parameters)
        {
            var state = (State)_state[param.Handle];
            Tensor? grad = param.grad;
            if (grad is null) continue;
            if (maximize) grad = -grad;
            state.step += 1;
            if (weightDecay != 0) grad = grad.add(param, decay);   // L2: into the gradient
            moments.Step(param, grad, grad.conj(), state.step, state.exp_avg, state.exp_avg_sq, ref state.max_exp_avg_sq, amsgrad);
        }
    }, closure);
}
