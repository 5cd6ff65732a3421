using Pruning.Interop;
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

    /// <inheritdoc />
    public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
    {
        var options = (Options)group.Options;
        double beta1 = options.beta1!.Value, beta2 = options.beta2!.Value, weightDecay = options.weight_decay!.Value;
        double eps = options.eps!.Value, lr = options.LearningRate!.Value;
        bool amsgrad = options.amsgrad!.Value, maximize = options.maximize!.Value;
        using Scalar b1 = beta1.ToScalar(), oneMinusB1 = (1 - beta1).ToScalar(), b2 = beta2.ToScalar(), oneMinusB2 = (1 - beta2).ToScalar();
        using Scalar epsilon = eps.ToScalar(), shrink = (1 - lr * weightDecay).ToScalar();
        foreach (Parameter param in group.Parameters)
        {
            var state = (State)_state[param.Handle];
            Tensor? grad = param.grad;
            if (grad is null) continue;
            if (maximize) grad = -grad;
            state.step += 1;
            param.mul_(shrink);
            double biasCorrection1 = 1 - Math.Pow(beta1, state.step);
            double biasCorrection2 = 1 - Math.Pow(beta2, state.step);

            state.exp_avg.mul_(b1).add_(grad, oneMinusB1);
            state.exp_avg_sq.mul_(b2).addcmul_(grad, grad, oneMinusB2);

            using Scalar correction = Math.Sqrt(biasCorrection2).ToScalar();
            Tensor denom;
            if (amsgrad)
            {
                Tensor previous = state.max_exp_avg_sq;
                state.max_exp_avg_sq = torch.maximum(previous, state.exp_avg_sq).DetachFromDisposeScope();
                previous.Dispose();
                denom = state.max_exp_avg_sq.sqrt().div(correction).add_(epsilon, Scalars.One);
            }
            else
            {
                denom = state.exp_avg_sq.sqrt().div(correction).add_(epsilon, Scalars.One);
            }
            using Scalar stepSize = (-(lr / biasCorrection1)).ToScalar();
            param.addcdiv_(state.exp_avg, denom, stepSize);
        }
    }, closure);
}
