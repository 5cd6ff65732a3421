using TorchSharp;

namespace Pruning.Interop;

/// <summary>
/// Scalars that live as long as the process. TorchSharp 0.107 passes a Scalar's raw handle to native code without
/// keeping the object alive, so a temporary Scalar (an implicit conversion, or the hidden alpha = 1 of
/// <c>Tensor.add_(Tensor)</c>) can be finalized during the call and crash the process. Library code passes these, or
/// a Scalar it holds in a <c>using</c> variable until after the call, and never a temporary.
/// </summary>
internal static class Scalars
{
    /// <summary>1, for the alpha of add/sub.</summary>
    public static readonly Scalar One = 1.ToScalar();

    /// <summary>0, for comparisons and fills.</summary>
    public static readonly Scalar Zero = 0.ToScalar();
}
