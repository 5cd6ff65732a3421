using System.Globalization;
using Pruning.Interop;
using Pruning.Selection;
using Pruning.Structure;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Reconstruction;

/// <summary>How channel reconstruction chooses the channels to remove.</summary>
public enum ChannelSelection
{
    /// <summary>
    /// Greedy elimination: repeatedly remove the channel whose removal, with the rest refitted by least squares, adds
    /// the least output error (group OBS; exact for the quadratic error, in the spirit of ThiNet's greedy choice).
    /// </summary>
    Greedy,

    /// <summary>
    /// LASSO on one coefficient per channel (He et al. 2017): channels are ranked by how early they enter the
    /// regularization path, and the first ones kept.
    /// </summary>
    Lasso,
}

/// <summary>Settings for <see cref="ChannelReconstruction.Prune"/>.</summary>
public sealed class ChannelReconstructionOptions
{
    private readonly double _sparsity;
    private readonly double _dampening = 0.01;

    /// <summary>The fraction of each producer's channels to remove, in [0, 1); round(s·C) channels, at least one kept.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is outside [0, 1).</exception>
    public required double Sparsity
    {
        get => _sparsity;
        init
        {
            if (double.IsNaN(value) || value < 0 || value >= 1)
                throw new ArgumentOutOfRangeException(nameof(Sparsity), value, "Sparsity must be in [0, 1).");
            _sparsity = value;
        }
    }

    /// <summary>Per-producer fractions (by the producer's module name, e.g. <c>conv2</c>) that replace <see cref="Sparsity"/>.</summary>
    /// <value>The default is none.</value>
    public IReadOnlyDictionary<string, double> Overrides { get; init; } = new Dictionary<string, double>();

    /// <summary>How channels are chosen.</summary>
    /// <value>The default is <see cref="ChannelSelection.Greedy"/>.</value>
    public ChannelSelection Selection { get; init; } = ChannelSelection.Greedy;

    /// <summary>λ as a fraction of mean(diag H), added to H's diagonal for the least-squares refit.</summary>
    /// <value>The default is 0.01. 0 refits exactly, and fails with a clear error when the inputs are degenerate.</value>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative or not finite.</exception>
    public double Dampening
    {
        get => _dampening;
        init => _dampening = ObsSolver.CheckDampening(value);
    }
}

/// <summary>What channel reconstruction did to one producer/consumer pair.</summary>
/// <param name="Producer">The layer whose output channels were removed.</param>
/// <param name="Consumer">The layer whose weights were refitted.</param>
/// <param name="Channels">The producer's channels before.</param>
/// <param name="Kept">The channels kept.</param>
/// <param name="ErrorWithoutRefit">The consumer's output error on the calibration inputs with the removed channels'
/// weights only zeroed, relative to its output energy: ‖(W − Ŵ)X‖² / ‖WX‖².</param>
/// <param name="ErrorAfterRefit">The same after the least-squares refit.</param>
public sealed record ChannelReconstructionLayer(string Producer, string Consumer, int Channels, int Kept, double ErrorWithoutRefit, double ErrorAfterRefit);

/// <summary>
/// Channel pruning with reconstruction (He et al. 2017; ThiNet, Luo et al. 2017): for each dependency group of a
/// <see cref="ChannelGraph"/> that one Conv2d or Linear reads (and reads alone), in order, chooses which of the group's
/// channels that reader can do without, refits the reader's weights by least squares so that its output on the
/// calibration data is reproduced, and zeroes the removed channels in every layer of the group (filters, biases,
/// BatchNorm scales and shifts, depthwise filters). Then <see cref="ChannelGraph.ShrinkInPlace"/> removes them for real.
/// Groups that several layers read (a residual stage) or whose reader also reads other channels are left whole.
/// </summary>
/// <remarks>
/// Calibration is sequential: each reader is fitted on the inputs the already pruned layers before it produce, one
/// reader's H (d² doubles for its d inputs) at a time. The fit reproduces the reader's output on those inputs
/// with its original weights.
/// </remarks>
public static class ChannelReconstruction
{
    /// <summary>Prunes and refits the model <paramref name="graph"/> was traced from, in place; returns one row per group pruned.</summary>
    /// <exception cref="ArgumentException">An override names no group that can be reconstructed, or a value is out of range.</exception>
    /// <exception cref="InvalidOperationException">The calibration set is empty, a layer never runs, or its inputs are
    /// degenerate without dampening; the message names the layer.</exception>
    public static IReadOnlyList<ChannelReconstructionLayer> Prune(ChannelGraph graph, CalibrationSet calibration, ChannelReconstructionOptions options)
    {
        TorchHealth.EnsureOnFirstUse();
        ArgumentNullException.ThrowIfNull(graph);
        ArgumentNullException.ThrowIfNull(calibration);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(options.Overrides, "options.Overrides");
        var pairs = graph.Groups.Select(g => (Group: g, Reader: graph.SoleConsumer(g))).Where(p => p.Reader is not null)
            .Select(p => (p.Group, Consumer: p.Reader!.Value.Consumer)).ToList();
        foreach (var (name, value) in options.Overrides)
        {
            if (pairs.All(p => p.Group.Producers[0] != name))
                throw new ArgumentException($"ChannelReconstructionOptions.Overrides names '{name}', which is not the first producer of a group one layer reads alone; those are: {string.Join(", ", pairs.Select(p => p.Group.Producers[0]))}.", nameof(options));
            if (double.IsNaN(value) || value < 0 || value >= 1)
                throw new ArgumentException($"ChannelReconstructionOptions.Overrides['{name}'] is {value}; it must be in [0, 1).", nameof(options));
        }
        nn.Module model = graph.Model;
        var results = new List<ChannelReconstructionLayer>();
        using var sequential = new SequentialCalibration(model, calibration, "channel reconstruction");
        using var noGrad = torch.no_grad();
        foreach (var (group, consumer) in pairs)
        {
            string producer = group.Producers[0];
            double sparsity = options.Overrides.TryGetValue(producer, out double s) ? s : options.Sparsity;
            int count = (int)group.Channels;
            int remove = (int)Math.Min(MaskSelector.PrunedCount(sparsity, count), count - 1);
            if (remove == 0) continue;
            string consumerWeight = $"{consumer}.weight";
            CalibrationStage stage = CalibrationStage.For(model, [consumerWeight], "channel reconstruction")[0];
            var covariances = sequential.Collect(stage, [consumerWeight], _ => Columns(model, consumerWeight));
            using var scope = torch.NewDisposeScope();
            Tensor h;
            using (covariances[consumerWeight]) h = covariances[consumerWeight].Mean();
            Parameter parameter = model.get_parameter(consumerWeight)!;
            Tensor weight = parameter.detach().reshape(parameter.shape[0], -1).to(ScalarType.Float64, torch.CPU);
            int perChannel = (int)(weight.shape[1] / count);
            Tensor damped = Damped(h, options.Dampening);
            bool[] keep = options.Selection == ChannelSelection.Greedy
                ? Greedy(weight, damped, count, perChannel, remove, consumerWeight)
                : Lasso(weight, h, count, perChannel, remove);
            Tensor columns = ColumnMask(keep, perChannel);
            Tensor zeroed = weight.mul(columns);
            Tensor refit = Refit(weight, h, damped, keep, perChannel, consumerWeight);
            double energy = Quadratic(weight, h);
            results.Add(new ChannelReconstructionLayer(producer, consumer, count, keep.Count(k => k),
                energy == 0 ? 0 : Quadratic(weight.sub(zeroed), h) / energy, energy == 0 ? 0 : Quadratic(weight.sub(refit), h) / energy));
            parameter.copy_(refit.reshape(parameter.shape));
            ZeroChannels(model, graph, group, keep);
        }
        return results;
    }

    private static long Columns(nn.Module model, string weight) => model.get_parameter(weight)!.shape.Skip(1).Aggregate(1L, (a, b) => a * b);

    /// <summary>H + λ·mean(diag H)·I.</summary>
    private static Tensor Damped(Tensor h, double dampening)
    {
        Tensor damped = h.clone();
        double mean = h.diagonal().mean().item<double>();
        using var lambda = (dampening * (mean > 0 ? mean : 1)).ToScalar();
        damped.diagonal().add_(lambda);
        return damped;
    }

    /// <summary>tr(A H Aᵀ).</summary>
    private static double Quadratic(Tensor a, Tensor h)
    {
        using var scope = torch.NewDisposeScope();
        return a.mm(h).mul(a).sum().item<double>();
    }

    private static Tensor ColumnMask(bool[] keep, int perChannel) =>
        torch.tensor(keep.SelectMany(k => Enumerable.Repeat(k ? 1.0 : 0.0, perChannel)).ToArray(), ScalarType.Float64);

    /// <summary>
    /// Group OBS elimination: with H⁻¹ over the kept inputs, removing channel c (columns G) costs
    /// tr(W_G [H⁻¹_GG]⁻¹ W_Gᵀ) after the optimal refit; remove the cheapest, update W and H⁻¹, repeat.
    /// </summary>
    internal static bool[] Greedy(Tensor weight, Tensor damped, int count, int perChannel, int remove, string name)
    {
        using var scope = torch.NewDisposeScope();
        var (lower, info) = torch.linalg.cholesky_ex(damped);
        if (info.item<int>() != 0)
            throw new InvalidOperationException($"The input covariance of '{name}' is singular; set ChannelReconstructionOptions.Dampening above 0 or give more calibration data.");
        Tensor inverse = torch.cholesky_inverse(lower);
        Tensor w = weight.clone();
        int rows = (int)w.shape[0];
        var keep = Enumerable.Repeat(true, count).ToArray();
        for (int step = 0; step < remove; step++)
        {
            using var stepScope = torch.NewDisposeScope();
            // Diagonal blocks of H⁻¹, one per channel: [C, g, g].
            Tensor blocks = inverse.reshape(count, perChannel, count, perChannel).diagonal(0, 0, 2).permute(2, 0, 1);
            Tensor eye = torch.eye(perChannel, dtype: ScalarType.Float64).expand(count, perChannel, perChannel);
            Tensor alive = torch.tensor(keep).reshape(count, 1, 1);
            Tensor safe = torch.where(alive, blocks, eye);
            Tensor solve = torch.linalg.inv(safe);
            Tensor grouped = w.reshape(rows, count, perChannel);
            Tensor cost = torch.einsum("rci,cij,rcj->c", grouped, solve, grouped);
            double[] costs = cost.data<double>().ToArray();
            int best = -1;
            for (int c = 0; c < count; c++)
                if (keep[c] && (best < 0 || costs[c] < costs[best])) best = c;
            keep[best] = false;
            long g0 = (long)best * perChannel;
            Tensor m = solve[best];
            Tensor rowsOfInverse = inverse.narrow(0, g0, perChannel); // [g, d]
            w.sub_(w.narrow(1, g0, perChannel).mm(m).mm(rowsOfInverse));
            w.narrow(1, g0, perChannel).zero_();
            inverse.sub_(inverse.narrow(1, g0, perChannel).mm(m).mm(rowsOfInverse));
            inverse.narrow(0, g0, perChannel).zero_();
            inverse.narrow(1, g0, perChannel).zero_();
        }
        return keep;
    }

    /// <summary>
    /// LASSO on per-channel coefficients β: ½βᵀQβ − bᵀβ + λ‖β‖₁, with Q_cd = tr(W_c H_cd W_dᵀ) the inner products of
    /// the channels' output contributions and b = Q·1 (the original output). Coordinate descent along a falling λ
    /// path; channels are kept in the order they enter it (ties: larger |β| at the end of the path).
    /// </summary>
    internal static bool[] Lasso(Tensor weight, Tensor h, int count, int perChannel, int remove)
    {
        using var scope = torch.NewDisposeScope();
        int rows = (int)weight.shape[0];
        Tensor grouped = weight.reshape(rows, count, perChannel);
        Tensor q = torch.einsum("rci,cidj,rdj->cd", grouped, h.reshape(count, perChannel, count, perChannel), grouped);
        double[] Q = q.contiguous().data<double>().ToArray();
        double[] b = q.sum(1).data<double>().ToArray();
        double lambdaMax = b.Max(Math.Abs);
        var beta = new double[count];
        var entered = Enumerable.Repeat(int.MaxValue, count).ToArray();
        const int Path = 60;
        for (int k = 0; k < Path && lambdaMax > 0; k++)
        {
            double lambda = lambdaMax * Math.Pow(1e-4, (double)k / (Path - 1));
            for (int sweep = 0; sweep < 200; sweep++)
            {
                double change = 0;
                for (int c = 0; c < count; c++)
                {
                    double qcc = Q[c * count + c];
                    if (qcc <= 0) { beta[c] = 0; continue; }
                    double residual = b[c];
                    for (int d = 0; d < count; d++)
                        if (d != c) residual -= Q[c * count + d] * beta[d];
                    double next = Math.Sign(residual) * Math.Max(Math.Abs(residual) - lambda, 0) / qcc;
                    change = Math.Max(change, Math.Abs(next - beta[c]));
                    beta[c] = next;
                }
                if (change < 1e-10) break;
            }
            for (int c = 0; c < count; c++)
                if (beta[c] != 0 && entered[c] == int.MaxValue) entered[c] = k;
        }
        var order = Enumerable.Range(0, count).OrderBy(c => entered[c]).ThenByDescending(c => Math.Abs(beta[c])).ThenBy(c => c).ToList();
        var keep = new bool[count];
        foreach (int c in order.Take(count - remove)) keep[c] = true;
        return keep;
    }

    /// <summary>The least-squares refit: Ŵ_K = W H_{:,K} (H_KK + λI)⁻¹, zero on the removed columns.</summary>
    internal static Tensor Refit(Tensor weight, Tensor h, Tensor damped, bool[] keep, int perChannel, string name)
    {
        using var scope = torch.NewDisposeScope();
        long[] kept = keep.SelectMany((k, c) => k ? Enumerable.Range(c * perChannel, perChannel).Select(i => (long)i) : []).ToArray();
        Tensor index = torch.tensor(kept);
        Tensor hk = damped.index_select(0, index).index_select(1, index);
        var (lower, info) = torch.linalg.cholesky_ex(hk);
        if (info.item<int>() != 0)
            throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture,
                $"The inputs of '{name}' on the kept channels are degenerate, so the least-squares refit has no unique solution. Set ChannelReconstructionOptions.Dampening above 0 or give more calibration data."));
        Tensor right = weight.mm(h.index_select(1, index)); // [rows, |K|]
        Tensor solved = torch.cholesky_solve(right.t(), lower).t(); // (H_KK)⁻¹ applied on the right (H symmetric)
        Tensor result = torch.zeros_like(weight);
        result.index_copy_(1, index, solved);
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>Zeroes the removed channels in every layer of the group: producers' rows and biases, BatchNorm scales and shifts, depthwise filters.</summary>
    private static void ZeroChannels(nn.Module model, ChannelGraph graph, ChannelGroup group, bool[] keep)
    {
        using var scope = torch.NewDisposeScope();
        Parameter producer = model.get_parameter(group.Weight)!;
        Tensor rows = torch.tensor(keep.Select(k => k ? 1f : 0f).ToArray(), producer.dtype, producer.device);
        foreach (string name in graph.CoupledWith(group.Weight).Prepend(group.Weight))
        {
            Parameter p = model.get_parameter(name)!;
            p.mul_(rows.to(p.dtype, p.device).reshape([-1, .. Enumerable.Repeat(1L, Math.Max(0, (int)p.dim() - 1))]));
        }
    }
}
