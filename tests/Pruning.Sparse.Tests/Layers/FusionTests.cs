using Pruning.Sparse.Kernels;
using Pruning.Sparse.Layers;
using Pruning.Sparse.Matrices;

namespace Pruning.Sparse.Tests.Layers;

/// <summary>
/// A convolution followed by ReLU/ReLU6 and 2×2 max pooling runs as one step (the store applies them): the fused
/// model must give bit for bit what the same layers give one model at a time, which never fuses.
/// </summary>
public class FusionTests
{
    /// <summary>Runs each layer as a model of its own: nothing fuses across models.</summary>
    private static float[] LayerByLayer(FeatureShape input, SparseLayer[] layers, float[] x, int batch, int threads)
    {
        FeatureShape shape = input;
        foreach (SparseLayer layer in layers)
        {
            var single = new SparseModel(shape, [layer]);
            x = single.Run(x, batch, threads);
            shape = single.OutputShape;
        }
        return x;
    }

    public static TheoryData<int, int, int, int, int, int, bool> Shapes => new()
    {
        // channels in, out, height, width, padding, batch, dense filters
        { 1, 4, 12, 12, 1, 16, false },   // the failing worker-pool case: 14-wide padded rows, several blocks
        { 3, 5, 28, 28, 1, 64, false },   // many blocks, each a whole number of row pairs
        { 2, 3, 13, 11, 1, 5, false },    // odd extents: the last row and column are dropped by the floor
        { 4, 6, 9, 9, 0, 3, true },       // no padding, 7×7 output (odd), dense four-filter kernel
        { 5, 7, 14, 14, 1, 1, true },     // batch 1, one block
        { 16, 9, 30, 30, 1, 24, false },  // a wide product through per-thread tiles
        { 2, 2, 6, 70, 1, 40, false },    // rows wider than a vector pair, many images per block
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Conv_ReLU_and_2x2_max_pool_fused_equal_the_layers_one_at_a_time(int c, int outC, int h, int w, int p, int batch, bool dense)
    {
        float[] weight = dense ? Reference.Random(outC * c * 9, 1) : Reference.Sparse(outC, c * 9, 0.7, 1);
        float[] bias = Reference.Random(outC, 2);
        float[] x = Reference.Random((long)c * h * w * batch, 3);
        // NaN must pass through the fused activation and the pooling, as through the separate layers.
        x[5] = float.NaN;
        foreach (SimdLevel level in Reference.Levels)
            foreach (ActivationKind? kind in new ActivationKind?[] { ActivationKind.ReLU, ActivationKind.ReLU6, null })
            {
                WeightMatrix matrix = dense ? WeightMatrix.FromDense(weight, outC, c * 9, MatrixFormat.Dense) : CsrMatrix.FromDense(weight, outC, c * 9);
                var layers = new List<SparseLayer> { new Conv2dLayer(matrix, bias, c, (3, 3), padding: (p, p)) { Simd = level } };
                if (kind is { } k) layers.Add(new ActivationLayer(k));
                layers.Add(new Pool2dLayer(PoolKind.Max, (2, 2)));
                var input = new FeatureShape(c, h, w);
                var model = new SparseModel(input, layers);
                foreach (int threads in new[] { 1, 2, 3 })
                {
                    float[] expected = LayerByLayer(input, [.. layers], x, batch, threads);
                    float[] fused = model.Run(x, batch, threads);
                    fused.Should().Equal(expected, (a, b) => a.Equals(b), $"{level}, {kind}, {threads} threads; first difference at {Enumerable.Range(0, fused.Length).FirstOrDefault(i => !fused[i].Equals(expected[i]), -1)}: {fused.Length} outputs; {string.Join(" ", Enumerable.Range(0, fused.Length).Where(i => !fused[i].Equals(expected[i])).Take(6).Select(i => $"{i}:{fused[i]}/{expected[i]}"))}");
                }
            }
    }

    [Fact]
    public void The_fused_store_really_pools_and_clamps()
    {
        // A known answer, not just agreement: a 3×3 filter that passes its centre (the identity) on a 4×4 plane, ReLU6, 2×2 max pooling.
        float[] x = [-1, -2, 3, 9, /**/ -5, -3, 1, 2, /**/ 7, 0, -1, -1, /**/ 1, 5, -2, -8];
        var conv = new Conv2dLayer(WeightMatrix.FromDense([0f, 0f, 0f, 0f, 1f, 0f, 0f, 0f, 0f], 1, 9, MatrixFormat.Csr), default, 1, (3, 3), padding: (1, 1));
        var model = new SparseModel(new FeatureShape(1, 4, 4), [conv, new ActivationLayer(ActivationKind.ReLU6), new Pool2dLayer(PoolKind.Max, (2, 2))]);
        model.Run(x, 1).Should().Equal(0f, 6f, 6f, 0f);
    }

    [Fact]
    public void Pooling_that_is_not_2x2_at_stride_2_and_other_activations_run_as_their_own_layers()
    {
        float[] weight = Reference.Sparse(4, 27, 0.5, 4);
        float[] x = Reference.Random(3 * 10 * 10 * 2, 5);
        var input = new FeatureShape(3, 10, 10);
        SparseLayer[][] chains =
        [
            [new Conv2dLayer(CsrMatrix.FromDense(weight, 4, 27), default, 3, (3, 3), padding: (1, 1)), new ActivationLayer(ActivationKind.LeakyReLU, 0.1f), new Pool2dLayer(PoolKind.Max, (2, 2))],
            [new Conv2dLayer(CsrMatrix.FromDense(weight, 4, 27), default, 3, (3, 3), padding: (1, 1)), new ActivationLayer(ActivationKind.ReLU), new Pool2dLayer(PoolKind.Max, (3, 3), (2, 2))],
            [new Conv2dLayer(CsrMatrix.FromDense(weight, 4, 27), default, 3, (3, 3), padding: (1, 1)), new Pool2dLayer(PoolKind.Average, (2, 2))],
            [new Conv2dLayer(CsrMatrix.FromDense(weight, 4, 27), default, 3, (3, 3), padding: (1, 1)), new ActivationLayer(ActivationKind.ReLU), new Pool2dLayer(PoolKind.Max, (2, 2), padding: (1, 1))],
            [new Conv2dLayer(CsrMatrix.FromDense(weight, 4, 27), default, 3, (3, 3), (2, 2), (1, 1)), new ActivationLayer(ActivationKind.ReLU), new Pool2dLayer(PoolKind.Max, (2, 2))],
        ];
        foreach (SparseLayer[] chain in chains)
            new SparseModel(input, chain).Run(x, 2).Should().Equal(LayerByLayer(input, chain, x, 2, 0));
    }
}
