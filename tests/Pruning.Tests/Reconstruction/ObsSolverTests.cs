using Pruning.Grouping;
using Pruning.Reconstruction;
using Pruning.Selection;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Tests.Reconstruction;

[Collection(TorchCollection.Name)]
public sealed class ObsSolverTests
{
    internal static Tensor Matrix(double[,] values)
    {
        int rows = values.GetLength(0), columns = values.GetLength(1);
        var flat = new double[rows * columns];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++) flat[r * columns + c] = values[r, c];
        return torch.tensor(flat, [rows, columns], ScalarType.Float64);
    }

    /// <summary>Inputs with correlated columns of very different scales, so H is far from diagonal.</summary>
    internal static Tensor CorrelatedInputs(int seed, int rows, int columns)
    {
        var g = new torch.Generator((ulong)seed);
        Tensor z = torch.randn([rows, columns], ScalarType.Float64, generator: g);
        Tensor mix = torch.randn([columns, columns], ScalarType.Float64, generator: g).mul(0.5).add(torch.eye(columns, dtype: ScalarType.Float64));
        Tensor scale = torch.linspace(0.2, 3, columns, ScalarType.Float64);
        return z.mm(mix).mul(scale);
    }

    internal static Tensor Random(int seed, int rows, int columns)
    {
        var g = new torch.Generator((ulong)seed);
        return torch.randn([rows, columns], ScalarType.Float64, generator: g);
    }

    /// <summary>‖WX − ŴX‖² / rows of X: tr((W − Ŵ) H (W − Ŵ)ᵀ) for the mean covariance H.</summary>
    internal static double OutputError(Tensor dense, Tensor pruned, Tensor h)
    {
        using var d = dense.sub(pruned);
        using var product = d.mm(h).mul(d);
        return product.sum().item<double>();
    }

    private static bool[] Solve(Tensor weight, Tensor h, PruningGranularity granularity, double target, int blockSize = 128, double dampening = 0,
        bool[]? fixedKeep = null, long[]? shape = null)
    {
        var keep = new bool[weight.numel()];
        var windows = new WeightWindows("layer.weight", shape ?? weight.shape, granularity);
        ObsSolver.Prune(weight, h, windows, target, dampening, blockSize, default, keep, fixedKeep);
        return keep;
    }

    [Fact]
    public void A_2x3_layer_matches_the_closed_form_OBS_solution()
    {
        // Rows whose first weight is tiny: both lose column 0 (1/3 of 6 weights = 2), and the kept weights absorb it by
        // Ŵ = W − (w₀ / [H⁻¹]₀₀) · H⁻¹[0, :], which is also the least-squares refit of the kept columns.
        using var scope = torch.NewDisposeScope();
        Tensor h = Matrix(new double[,] { { 2.0, 0.6, 0.3 }, { 0.6, 1.5, -0.4 }, { 0.3, -0.4, 1.0 } });
        double[,] w = { { 0.1, 2.0, -1.0 }, { -0.05, -1.5, 3.0 } };
        Tensor weight = Matrix(w);

        bool[] keep = Solve(weight, h, PruningGranularity.Element, 1.0 / 3);

        keep.Should().Equal(false, true, true, false, true, true);
        double[,] inv = Inverse3(new double[,] { { 2.0, 0.6, 0.3 }, { 0.6, 1.5, -0.4 }, { 0.3, -0.4, 1.0 } });
        for (int r = 0; r < 2; r++)
        {
            double scale = w[r, 0] / inv[0, 0];
            double[] expected = [0, w[r, 1] - scale * inv[0, 1], w[r, 2] - scale * inv[0, 2]];
            weight[r].data<double>().ToArray().Should().Equal(expected, (a, b) => Math.Abs(a - b) < 1e-12);

            // The same as the least-squares refit: ŵ_K = w_K + H_KK⁻¹ H_K0 w_0 with K = {1, 2}.
            double h11 = 1.5, h12 = -0.4, h22 = 1.0, h10 = 0.6, h20 = 0.3, det = h11 * h22 - h12 * h12;
            double r1 = h10 * w[r, 0], r2 = h20 * w[r, 0];
            double ls1 = w[r, 1] + (h22 * r1 - h12 * r2) / det, ls2 = w[r, 2] + (-h12 * r1 + h11 * r2) / det;
            expected[1].Should().BeApproximately(ls1, 1e-12);
            expected[2].Should().BeApproximately(ls2, 1e-12);
        }
    }

    [Fact]
    public void A_weight_pruned_in_the_middle_updates_only_the_columns_after_it()
    {
        // Column 1 is pruned; the sequential solver lets only column 2 absorb it, by the inverse of H over columns 1..2.
        using var scope = torch.NewDisposeScope();
        Tensor h = Matrix(new double[,] { { 2.0, 0.6, 0.3 }, { 0.6, 1.5, -0.4 }, { 0.3, -0.4, 1.0 } });
        double[,] w = { { 3.0, 0.01, -1.0 }, { -2.5, 0.02, 3.0 } };
        Tensor weight = Matrix(w);
        bool[] keep = Solve(weight, h, PruningGranularity.Element, 1.0 / 3);
        keep.Should().Equal(true, false, true, true, false, true);
        // inverse of [[1.5, -0.4], [-0.4, 1.0]]: [[1.0, 0.4], [0.4, 1.5]] / 1.34
        for (int r = 0; r < 2; r++)
        {
            double expected2 = w[r, 2] - w[r, 1] / (1.0 / 1.34) * (0.4 / 1.34);
            weight[r].data<double>().ToArray().Should().Equal([w[r, 0], 0, expected2], (a, b) => Math.Abs(a - b) < 1e-12);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(8)]
    [InlineData(24)]
    public void Blocked_lazy_updates_equal_unblocked_OBS_with_explicit_inverses(int blockSize)
    {
        using var scope = torch.NewDisposeScope();
        const int rows = 7, columns = 24;
        Tensor x = CorrelatedInputs(3, 200, columns);
        Tensor h = x.t().mm(x).div(200.0);
        Tensor dense = Random(4, rows, columns);
        var rng = new Random(5);
        bool[] mask = Enumerable.Range(0, rows * columns).Select(_ => rng.NextDouble() > 0.5).ToArray();

        // The reference: column by column, each pruned weight's error spread over the columns not yet processed with
        // an explicit inverse of H restricted to them, as OBS prescribes.
        Tensor expected = dense.clone();
        for (int j = 0; j < columns; j++)
        {
            Tensor inverse = torch.linalg.inv(h.narrow(0, j, columns - j).narrow(1, j, columns - j));
            for (int r = 0; r < rows; r++)
            {
                if (mask[r * columns + j]) continue;
                double wrj = expected[r, j].item<double>();
                expected[r].narrow(0, j, columns - j).sub_(inverse[0].mul(wrj / inverse[0, 0].item<double>()));
            }
        }

        Tensor weight = dense.clone();
        Solve(weight, h, PruningGranularity.Element, 0.5, blockSize, fixedKeep: mask);
        weight.sub(expected).abs().max().item<double>().Should().BeLessThan(1e-5);
        for (int i = 0; i < mask.Length; i++)
            if (!mask[i]) weight.flatten()[i].item<double>().Should().Be(0);
    }

    public static TheoryData<string> Granularities => ["element", "2:4", "4:8", "blocks1x4", "blocks2x2", "kernels"];

    private static (PruningGranularity Granularity, long[] Shape, double Target) Case(string name) => name switch
    {
        "element" => (PruningGranularity.Element, [16, 32], 0.6),
        "2:4" => (PruningGranularity.NOfM(2, 4), [16, 32], 0.5),
        "4:8" => (PruningGranularity.NOfM(4, 8), [16, 32], 0.5),
        "blocks1x4" => (PruningGranularity.Blocks(1, 4), [16, 32], 0.5),
        "blocks2x2" => (PruningGranularity.Blocks(2, 2), [16, 32], 0.5),
        _ => (PruningGranularity.Kernels(), [16, 8, 2, 2], 0.5),
    };

    [Theory]
    [MemberData(nameof(Granularities))]
    public void The_output_error_is_below_magnitude_pruning_for_every_granularity(string granularityName)
    {
        using var scope = torch.NewDisposeScope();
        var (granularity, shape, target) = Case(granularityName);
        int rows = (int)shape[0], columns = (int)(shape.Skip(1).Aggregate(1L, (a, b) => a * b));
        Tensor x = CorrelatedInputs(7, 400, columns);
        Tensor h = x.t().mm(x).div(400.0);
        Tensor dense = Random(8, rows, columns);

        Tensor obs = dense.clone();
        bool[] keep = Solve(obs, h, granularity, target, blockSize: 8, dampening: 0.01, shape: shape);

        // Magnitude at the same granularity and count, through the engine.
        float[] magnitude = dense.abs().to(ScalarType.Float32).data<float>().ToArray();
        var byMagnitude = MaskSelector.Select([new SelectionLayer("w", magnitude, shape) { Sparsity = target }], granularity)[0];
        Tensor magnitudePruned = dense.mul(torch.tensor(byMagnitude.Keep).reshape(rows, columns).to(ScalarType.Float64));

        keep.Count(k => !k).Should().Be((int)byMagnitude.PrunedCount, "the exact count is the engine's");
        double obsError = OutputError(dense, obs, h), magnitudeError = OutputError(dense, magnitudePruned, h);
        // Within an N:M run the choice is constrained to neighbouring columns of similar scale, so the gain is smaller.
        obsError.Should().BeLessThan((granularity.RunLength > 0 ? 0.97 : 0.6) * magnitudeError);
    }

    [Fact]
    public void Unstructured_counts_are_exact_across_uneven_column_blocks()
    {
        using var scope = torch.NewDisposeScope();
        Tensor x = CorrelatedInputs(9, 100, 23);
        Tensor h = x.t().mm(x).div(100.0);
        foreach (double target in new[] { 0.1, 0.37, 0.5, 0.9 })
        {
            Tensor weight = Random(10, 7, 23);
            bool[] keep = Solve(weight, h, PruningGranularity.Element, target, blockSize: 5, dampening: 0.01);
            keep.Count(k => !k).Should().Be((int)MaskSelector.PrunedCount(target, 7 * 23));
            weight.eq(0).sum().item<long>().Should().Be(keep.Count(k => !k));
        }
    }

    [Fact]
    public void N_of_M_keeps_exactly_N_in_every_run()
    {
        using var scope = torch.NewDisposeScope();
        Tensor x = CorrelatedInputs(11, 300, 32);
        Tensor h = x.t().mm(x).div(300.0);
        Tensor weight = Random(12, 9, 32);
        bool[] keep = Solve(weight, h, PruningGranularity.NOfM(2, 4), 0.5, blockSize: 6, dampening: 0.01);
        for (int run = 0; run < keep.Length / 4; run++)
            keep.Skip(run * 4).Take(4).Count(k => k).Should().Be(2);
    }

    [Fact]
    public void A_singular_covariance_without_dampening_names_the_layer()
    {
        using var scope = torch.NewDisposeScope();
        Tensor x = CorrelatedInputs(13, 3, 8); // 3 rows cannot span 8 inputs
        Tensor h = x.t().mm(x);
        var act = () => Solve(Random(14, 4, 8), h, PruningGranularity.Element, 0.5, dampening: 0);
        act.Should().Throw<InvalidOperationException>().WithMessage("*'layer.weight'*singular*Dampening*");
        var dampened = () => Solve(Random(14, 4, 8), h, PruningGranularity.Element, 0.5, dampening: 0.01);
        dampened.Should().NotThrow();
    }

    private static double[,] Inverse3(double[,] m)
    {
        double a = m[0, 0], b = m[0, 1], c = m[0, 2], d = m[1, 0], e = m[1, 1], f = m[1, 2], g = m[2, 0], hh = m[2, 1], i = m[2, 2];
        double det = a * (e * i - f * hh) - b * (d * i - f * g) + c * (d * hh - e * g);
        return new double[,]
        {
            { (e * i - f * hh) / det, (c * hh - b * i) / det, (b * f - c * e) / det },
            { (f * g - d * i) / det, (a * i - c * g) / det, (c * d - a * f) / det },
            { (d * hh - e * g) / det, (b * g - a * hh) / det, (a * e - b * d) / det },
        };
    }
}
