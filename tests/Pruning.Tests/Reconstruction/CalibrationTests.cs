using Pruning.Reconstruction;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Reconstruction;

[Collection(TorchCollection.Name)]
public sealed class CalibrationTests
{
    [Fact]
    public void Covariance_accumulated_over_batches_equals_one_big_batch()
    {
        using var scope = torch.NewDisposeScope();
        Tensor x = ObsSolverTests.CorrelatedInputs(1, 90, 6).to(ScalarType.Float32);
        using var parts = new InputCovariance("w", 6);
        foreach (Tensor chunk in x.split(17)) parts.Add(chunk);
        using var whole = new InputCovariance("w", 6);
        whole.Add(x);
        parts.Rows.Should().Be(90);
        parts.Mean().sub(whole.Mean()).abs().max().item<double>().Should().BeLessThan(1e-12);
        Tensor x64 = x.to(ScalarType.Float64);
        whole.Mean().sub(x64.t().mm(x64).div(90.0)).abs().max().item<double>().Should().BeLessThan(1e-12);
    }

    [Fact]
    public void A_conv_layer_is_calibrated_on_its_unfolded_patches()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(2);
        var model = nn.Sequential(("conv", nn.Conv2d(2, 3, 3, stride: 2, padding: 1)));
        Tensor input = torch.randn(2, 2, 5, 4);
        var stage = CalibrationStage.For(model, ["conv.weight"], "test").Single();
        using var covariance = new InputCovariance("conv.weight", 18);
        stage.Record(input, null, new Dictionary<string, InputCovariance> { ["conv.weight"] = covariance });

        // Patches by hand: output positions of a 3×3, stride-2, pad-1 conv over 5×4 are 3×2 per image.
        var rows = new List<double[]>();
        float[] v = input.data<float>().ToArray();
        for (int n = 0; n < 2; n++)
            for (int oy = 0; oy < 3; oy++)
                for (int ox = 0; ox < 2; ox++)
                {
                    var row = new double[18];
                    for (int c = 0; c < 2; c++)
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++)
                            {
                                int y = oy * 2 - 1 + ky, xx = ox * 2 - 1 + kx;
                                row[c * 9 + ky * 3 + kx] = y < 0 || y >= 5 || xx < 0 || xx >= 4 ? 0 : v[((n * 2 + c) * 5 + y) * 4 + xx];
                            }
                    rows.Add(row);
                }
        Tensor patches = torch.tensor(rows.SelectMany(r => r).ToArray(), [rows.Count, 18], ScalarType.Float64);
        covariance.Rows.Should().Be(12);
        covariance.Mean().sub(patches.t().mm(patches).div(12.0)).abs().max().item<double>().Should().BeLessThan(1e-5);
    }

    [Theory]
    [InlineData("lstm", true)]
    [InlineData("lstm", false)]
    [InlineData("gru", true)]
    public void Recurrent_gate_inputs_reproduce_the_modules_own_outputs(string kind, bool batchFirst)
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(3);
        nn.Module module = kind == "lstm" ? nn.LSTM(5, 7, numLayers: 3, batchFirst: batchFirst) : nn.GRU(5, 7, numLayers: 3, batchFirst: batchFirst);
        module.eval();
        Tensor input = batchFirst ? torch.randn(4, 6, 5) : torch.randn(6, 4, 5);
        Tensor output = module is LSTM lstm ? lstm.call(input).Item1 : ((GRU)module).call(input).Item1;
        if (batchFirst) output = output.transpose(0, 1); // [T, B, H]

        var stage = CalibrationStage.For(new Holder(module), ["rnn.weight_ih_l2", "rnn.weight_hh_l2"], "test").Single();
        stage.Layer.Should().Be(2);
        var (_, hidden) = RecurrentGateInputs(module, input);
        // The top layer's step t starts from its output at t − 1 (and from zero at t = 0).
        hidden[0].abs().max().item<float>().Should().Be(0);
        hidden.narrow(0, 1, 5).sub(output.narrow(0, 0, 5)).abs().max().item<float>().Should().BeLessThan(1e-5f);
    }

    private static (Tensor, Tensor) RecurrentGateInputs(nn.Module module, Tensor input)
    {
        var stages = CalibrationStage.For(new Holder(module), ["rnn.weight_ih_l2", "rnn.weight_hh_l2"], "test");
        var ih = new InputCovariance("rnn.weight_ih_l2", 7);
        var hh = new InputCovariance("rnn.weight_hh_l2", 7);
        stages[0].Record(input, null, new Dictionary<string, InputCovariance> { ["rnn.weight_ih_l2"] = ih, ["rnn.weight_hh_l2"] = hh });
        ih.Rows.Should().Be(24);
        hh.Rows.Should().Be(24);
        return CalibrationStage.GateInputs(module, 2, input);
    }

    /// <summary>A module that owns one child named "rnn".</summary>
    private sealed class Holder : nn.Module
    {
        public Holder(nn.Module child) : base("holder") => register_module("rnn", child);
    }
}
