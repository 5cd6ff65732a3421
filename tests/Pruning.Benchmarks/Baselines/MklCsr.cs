using System.Runtime.InteropServices;
using Pruning.Sparse.Matrices;

namespace Pruning.Benchmarks.Baselines;

/// <summary>
/// MKL's sparse BLAS (inspector-executor CSR, float) as the sparse peer: the copy linked into TorchSharp's
/// libtorch_cpu.so exports mkl_sparse_s_create_csr / _mv / _mm (not mkl_sparse_optimize, so no hints). Threads are
/// set with MKL_Set_Num_Threads_Local (the lowercase variant crashes when given an int). Benchmark-only.
/// </summary>
internal sealed unsafe class MklCsr : IDisposable
{
    private const int IndexBaseZero = 0, NonTranspose = 10, General = 20, FillLower = 40, DiagNonUnit = 50, RowMajor = 101;

    [StructLayout(LayoutKind.Sequential)]
    private struct MatrixDescr
    {
        public int Type, Mode, Diag;
    }

    private static readonly nint Library = Load();
    private static readonly delegate* unmanaged<nint*, int, int, int, int*, int*, int*, float*, int> Create;
    private static readonly delegate* unmanaged<int, float, nint, MatrixDescr, float*, float, float*, int> Mv;
    private static readonly delegate* unmanaged<int, float, nint, MatrixDescr, int, float*, int, int, float, float*, int, int> Mm;
    private static readonly delegate* unmanaged<nint, int> Destroy;
    private static readonly delegate* unmanaged<int, int> SetThreadsLocal;

    static MklCsr()
    {
        if (Library == 0) return;
        Create = (delegate* unmanaged<nint*, int, int, int, int*, int*, int*, float*, int>)NativeLibrary.GetExport(Library, "mkl_sparse_s_create_csr");
        Mv = (delegate* unmanaged<int, float, nint, MatrixDescr, float*, float, float*, int>)NativeLibrary.GetExport(Library, "mkl_sparse_s_mv");
        Mm = (delegate* unmanaged<int, float, nint, MatrixDescr, int, float*, int, int, float, float*, int, int>)NativeLibrary.GetExport(Library, "mkl_sparse_s_mm");
        Destroy = (delegate* unmanaged<nint, int>)NativeLibrary.GetExport(Library, "mkl_sparse_destroy");
        SetThreadsLocal = (delegate* unmanaged<int, int>)NativeLibrary.GetExport(Library, "MKL_Set_Num_Threads_Local");
    }

    /// <summary>Whether libtorch_cpu.so (with MKL inside) was found next to the benchmark.</summary>
    public static bool Available => Library != 0;

    private static nint Load()
    {
        foreach (string path in new[] { Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libtorch_cpu.so"), Path.Combine(AppContext.BaseDirectory, "libtorch_cpu.so") })
            if (File.Exists(path) && NativeLibrary.TryLoad(path, out nint handle)) return handle;
        return 0;
    }

    private readonly int[] _rowPointers, _columns;
    private readonly float[] _values;
    private readonly GCHandle[] _pins;
    private readonly nint _handle;
    private readonly int _rows;

    /// <summary>MKL's CSR of the same matrix (its own copy of the arrays, pinned for MKL's lifetime).</summary>
    public MklCsr(CsrMatrix matrix)
    {
        if (!Available) throw new InvalidOperationException("libtorch_cpu.so was not found next to the benchmark.");
        _rows = matrix.Rows;
        _rowPointers = matrix.RowPointers.ToArray();
        _columns = Enumerable.Range(0, (int)matrix.NonZeros).Select(matrix.ColumnAt).ToArray();
        _values = matrix.Values.ToArray();
        _pins = [GCHandle.Alloc(_rowPointers, GCHandleType.Pinned), GCHandle.Alloc(_columns, GCHandleType.Pinned), GCHandle.Alloc(_values, GCHandleType.Pinned)];
        nint handle;
        int* rp = (int*)_pins[0].AddrOfPinnedObject();
        int status = Create(&handle, IndexBaseZero, matrix.Rows, matrix.Cols, rp, rp + 1, (int*)_pins[1].AddrOfPinnedObject(), (float*)_pins[2].AddrOfPinnedObject());
        if (status != 0) throw new InvalidOperationException($"mkl_sparse_s_create_csr returned {status}.");
        _handle = handle;
    }

    public static void Threads(int threads) => SetThreadsLocal(threads);

    /// <summary>y = A·x: mv at batch 1; mm on feature-major operands (x [cols, batch], y [rows, batch], row-major) otherwise.</summary>
    public void Multiply(float* x, float* y, int batch)
    {
        var descr = new MatrixDescr { Type = General, Mode = FillLower, Diag = DiagNonUnit };
        int status = batch == 1
            ? Mv(NonTranspose, 1f, _handle, descr, x, 0f, y)
            : Mm(NonTranspose, 1f, _handle, descr, RowMajor, x, batch, batch, 0f, y, batch);
        if (status != 0) throw new InvalidOperationException($"MKL sparse product returned {status}.");
    }

    public void Dispose()
    {
        Destroy(_handle);
        foreach (var pin in _pins) pin.Free();
    }
}
