using TorchSharp;
using TorchSharp.Modules;
using ParamGroup = TorchSharp.Modules.AdamW.ParamGroup;
using State = TorchSharp.Modules.AdamW.State;
using static TorchSharp.torch;

namespace Pruning.Optimizers;

/// <summary>
/// TorchSharp's <see cref="TorchSharp.Modules.AdamW"/> with every Scalar kept alive until its native call returns (see
/// <see cref="Adam"/>): the same name, options, state, <c>state_dict</c>, files and arithmetic; bit-identical and a drop-in
/// replacement. Create it with <see cref="SafeOptim.AdamW"/>.
/// </summary>
public sealed class AdamW : TorchSharp.Modules.AdamW
{
    /// <summary>Creates the optimizer; the parameters mean what they mean for TorchSharp's AdamW.</summary>
    public AdamW(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weight_decay = 0, bool amsgrad = false, bool maximize = false)
        : base(parameters, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize) { }

    /// <summary>Creates the optimizer over parameter groups.</summary>
    public AdamW(IEnumerable<ParamGroup> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weight_decay = 0, bool amsgrad = false, bool maximize = false)
        : base(parameters, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize) { }

    /// <summary>One AdamW step over every parameter group, exactly as TorchSharp's, with each Scalar held until its native call returns.</summary>
    /// <param name="closure">Re-evaluates the model and returns the loss, as in TorchSharp; may be null.</param>
    /// <returns>The closure's loss, or null without a closure.</returns>
    public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
    {
        var options = (Options)group.Options;
        double beta1 = options.beta1!.Value, beta2 = options.beta2!.Value, lr = options.LearningRate!.Value;
        bool amsgrad = options.amsgrad!.Value, maximize = options.maximize!.Value;
        using Scalar shrink = (1 - lr * options.weight_decay!.Value).ToScalar();
        using var moments = new AdamMoments(lr, beta1, beta2, options.eps!.Value);
        foreach (Parameter param in group.Parameters)
        {
            var state = (State)_state[param.Handle];
            Tensor? grad = param.grad;
            if (grad is null) continue;
            if (maximize) grad = -grad;
            state.step += 1;
            param.mul_(shrink);                                     // decoupled: on the weights
            moments.Step(param, grad, grad, state.step, state.exp_avg, state.exp_avg_sq, ref state.max_exp_avg_sq, amsgrad);
        }
    }, closure);
}
