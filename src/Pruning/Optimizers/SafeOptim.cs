using TorchSharp.Modules;

namespace Pruning.Optimizers;

/// <summary>
/// Factories with the signatures of <c>torch.optim.Adam</c>, <c>AdamW</c> and <c>SGD</c> for this namespace's
/// Scalar-safe optimizers: replace <c>torch.optim.Adam(…)</c> with <c>SafeOptim.Adam(…)</c> and nothing else changes.
/// </summary>
public static class SafeOptim
{
    /// <summary>Adam (Kingma &amp; Ba 2014) that keeps its Scalars alive; see <see cref="Optimizers.Adam"/>.</summary>
    public static Adam Adam(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weight_decay = 0, bool amsgrad = false, bool maximize = false) =>
        new(parameters, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize);

    /// <summary>AdamW (Loshchilov &amp; Hutter 2019) that keeps its Scalars alive; see <see cref="Optimizers.AdamW"/>.</summary>
    public static AdamW AdamW(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weight_decay = 0, bool amsgrad = false, bool maximize = false) =>
        new(parameters, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize);

    /// <summary>SGD with optional momentum, dampening, weight decay and Nesterov momentum that keeps its Scalars alive; see <see cref="Optimizers.SGD"/>.</summary>
    public static SGD SGD(IEnumerable<Parameter> parameters, double lr, double momentum = 0, double dampening = 0, double weight_decay = 0,
        bool nesterov = false, bool maximize = false) =>
        new(parameters, lr, momentum, dampening, weight_decay, nesterov, maximize);
}
