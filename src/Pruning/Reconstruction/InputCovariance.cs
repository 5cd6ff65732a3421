using Pruning.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Reconstruction;

/// <summary>
/// H = XᵀX of one weight's inputs, summed in float64 over calibration rows: the one statistic OBS/SparseGPT and
/// least-squares channel pruning need. Memory is d² doubles for d inputs (a 1,200-input layer: 11.5 MB). Wanda needs
/// only the diagonal (each input's Σx²), d doubles.
/// </summary>
internal sealed class InputCovariance : IDisposable
{
    private Tensor? _sum;

    public InputCovariance(string name, long columns, bool diagonalOnly = false)
    {
        Name = name;
        Columns = columns;
        DiagonalOnly = diagonalOnly;
    }

    /// <summary>Whether only diag(XᵀX) is kept ([d] instead of [d, d]).</summary>
    public bool DiagonalOnly { get; }

    /// <summary>The weight this is for, for messages.</summary>
    public string Name { get; }

    /// <summary>d, the weight's inputs (columns of its 2-D view).</summary>
    public long Columns { get; }

    /// <summary>How many input rows have been added.</summary>
    public long Rows { get; private set; }

    /// <summary>Adds the rows of <paramref name="inputs"/> ([n, d], any dtype and device).</summary>
    public void Add(Tensor inputs)
    {
        if (inputs.dim() != 2 || inputs.shape[1] != Columns)
            throw new InvalidOperationException($"The inputs recorded for '{Name}' have shape [{string.Join(", ", inputs.shape)}]; the weight takes {Columns} inputs.");
        using var scope = torch.NewDisposeScope();
        Tensor x = inputs.detach().to(ScalarType.Float64);
        Tensor product = DiagonalOnly ? x.square().sum(dim: 0) : x.t().mm(x);
        if (_sum is null)
            _sum = product.DetachFromDisposeScope();
        else
            _sum.add_(product, Scalars.One);
        Rows += inputs.shape[0];
    }

    /// <summary>Restores a saved sum (takes <paramref name="sum"/>).</summary>
    public void Restore(Tensor sum, long rows)
    {
        _sum?.Dispose();
        _sum = sum;
        Rows = rows;
    }

    /// <summary>The sum XᵀX (float64, on the inputs' device; its diagonal alone when <see cref="DiagonalOnly"/>), or null before any rows; owned by this object.</summary>
    public Tensor? Sum => _sum;

    /// <summary>XᵀX / rows (or its diagonal) on the CPU, a new tensor the caller disposes.</summary>
    /// <exception cref="InvalidOperationException">No rows were recorded.</exception>
    public Tensor Mean()
    {
        if (_sum is null || Rows == 0)
            throw new InvalidOperationException($"No calibration inputs reached '{Name}'.");
        using var scope = torch.NewDisposeScope();
        using var rows = ((double)Rows).ToScalar();
        return _sum.cpu().div(rows).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        _sum?.Dispose();
        _sum = null;
        Rows = 0;
    }
}
