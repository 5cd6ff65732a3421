using System.Runtime.InteropServices;

namespace Pruning.Benchmarks.Baselines;

/// <summary>
/// OpenBLAS's dense sgemv/sgemm from the system library (<c>apt-get install libopenblas0-pthread</c>), the strongest
/// dense baseline on this CPU. A benchmark-only baseline, loaded when present: never a dependency of the packages.
/// </summary>
internal static unsafe class OpenBlas
{
    private const int RowMajor = 101, NoTrans = 111, Trans = 112;
    private static readonly nint Library = Load();
    private static readonly delegate* unmanaged<int, int, int, int, float, float*, int, float*, int, float, float*, int, void> Sgemv;
    private static readonly delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void> Sgemm;
    private static readonly delegate* unmanaged<int, void> SetThreads;

    static OpenBlas()
    {
        if (Library == 0) return;
        Sgemv = (delegate* unmanaged<int, int, int, int, float, float*, int, float*, int, float, float*, int, void>)NativeLibrary.GetExport(Library, "cblas_sgemv");
        Sgemm = (delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void>)NativeLibrary.GetExport(Library, "cblas_sgemm");
        SetThreads = (delegate* unmanaged<int, void>)NativeLibrary.GetExport(Library, "openblas_set_num_threads");
    }

    /// <summary>Whether libopenblas.so.0 was found.</summary>
    public static bool Available => Library != 0;

    private static nint Load()
    {
        foreach (string name in new[] { "libopenblas.so.0", "libopenblas.so", "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0" })
            if (NativeLibrary.TryLoad(name, out nint handle)) return handle;
        return 0;
    }

    public static void Threads(int threads) => SetThreads(threads);

    /// <summary>C[m, n] = A[m, k]·B[k, n], all row-major.</summary>
    public static void Gemm(float* a, float* b, float* c, int m, int n, int k) =>
        Sgemm(RowMajor, NoTrans, NoTrans, m, n, k, 1f, a, k, b, n, 0f, c, n);

    /// <summary>y[batch, rows] = x[batch, cols] · Wᵀ with W [rows, cols] row-major: gemv at batch 1, gemm otherwise.</summary>
    public static void Linear(float* w, int rows, int cols, float* x, float* y, int batch)
    {
        if (batch == 1) Sgemv(RowMajor, NoTrans, rows, cols, 1f, w, cols, x, 1, 0f, y, 1);
        else Sgemm(RowMajor, NoTrans, Trans, batch, rows, cols, 1f, x, cols, w, cols, 0f, y, rows);
    }
}
