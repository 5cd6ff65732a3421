using TorchSharp;
using TorchSharp.Modules;
using ParamGroup = TorchSharp.Modules.SGD.ParamGroup;
using State = TorchSharp.Modules.SGD.State;
using static TorchSharp.torch;

namespace Pruning.Optimizers;

/// <summary>
/// TorchSharp's <see cref="TorchSharp.Modules.SGD"/> with every Scalar kept alive until its native call returns (see
/// <see cref="Adam"/>): the same name, options, state, <c>state_dict</c>, files and arithmetic; bit-identical and a drop-in
/// replacement. Create it with <see cref="SafeOptim.SGD"/>.
/// </summary>
public sealed class SGD : TorchSharp.Modules.SGD
{
    /// <summary>Creates the optimizer; the parameters mean what they mean for TorchSharp's SGD.</summary>
    public SGD(IEnumerable<Parameter> parameters, double lr, double momentum = 0, double dampening = 0, double weight_decay = 0,
        bool nesterov = false, bool maximize = false)
        : base(parameters, lr, momentum, dampening, weight_decay, nesterov, maximize) { }

    /// <summary>Creates the optimizer over parameter groups.</summary>
    public SGD(IEnumerable<ParamGroup> parameters, double lr, double momentum = 0, double dampening = 0, double weight_decay = 0,
        bool nesterov = false, bool maximize = false)
        : base(parameters, lr, momentum, dampening, weight_decay, nesterov, maximize) { }

    /// <summary>One SGD step over every parameter group, exactly as TorchSharp's, with each Scalar held until its native call returns.</summary>
    /// <param name="closure">Re-evaluates the model and returns the loss, as in TorchSharp; may be null.</param>
    /// <returns>The closure's loss, or null without a closure.</returns>
    public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
    {
        var options = group.Options;
        double momentum = options.momentum!.Value, dampening = options.dampening!.Value, weightDecay = options.weight_decay!.Value;
        bool nesterov = options.nesterov!.Value, maximize = options.maximize!.Value;
        double lr = options.LearningRate!.Value;
        using Scalar decay = weightDecay.ToScalar(), mu = momentum.ToScalar(), keep = (1 - dampening).ToScalar(), alpha = (maximize ? lr : -lr).ToScalar();
        foreach (Parameter param in group.Parameters)
        {
            var state = (State)_state[param.Handle];
            Tensor? grad = param.grad;
            if (grad is null) continue;
            if (weightDecay != 0) grad = grad.add(param, decay);
            if (momentum != 0)
            {
                Tensor? buffer = state.momentum_buffer;
                if (buffer is null)
                {
                    buffer = grad.clone().detach().DetachFromDisposeScope();
                    state.momentum_buffer = buffer;
                }
                else
                {
                    buffer.mul_(mu).add_(grad, keep);
                }
                grad = nesterov ? grad.add(buffer, mu) : buffer;
                state.momentum_buffer = buffer;
            }
            param.add_(grad, alpha);
        }
    }, closure);
}
