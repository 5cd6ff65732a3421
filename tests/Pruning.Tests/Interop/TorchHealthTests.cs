using Pruning.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Tests.Interop;

/// <summary>
/// The libtorch health check: its answers are right, a wrong result is caught and named, and the in-process remedy is
/// applied only when it makes the checks pass. Tests that flip ATen's oneDNN switch run alone (the torch collection).
/// </summary>
[Collection(TorchCollection.Name)]
public class TorchHealthTests
{
    [Fact]
    public void The_host_computes_every_known_answer_once_ensured()
    {
        TorchHealthReport report = TorchHealth.Ensure();
        report.Healthy.Should().BeTrue(report.ToString());
        report.Results.Select(r => r.Check).Should().Contain(c => c.StartsWith("conv2d 3×3, batch 2", StringComparison.Ordinal))
            .And.Contain(c => c.StartsWith("LSTM", StringComparison.Ordinal)).And.HaveCount(5);
        TorchHealth.Ensure().Should().BeSameAs(report, "the checks run once per process");
    }

    [Fact]
    public void An_injected_wrong_value_is_reported_with_its_check_error_and_a_remedy()
    {
        var answers = KnownAnswers.All().ToArray();
        KnownAnswer linear = answers[^1];
        answers[^1] = linear with
        {
            Compute = () =>
            {
                float[] values = linear.Compute();
                values[7] += 0.01f;   // one element off by 0.01 of an answer whose range is about 5
                return values;
            },
        };
        double range = linear.Expected.Max(Math.Abs);

        TorchHealthReport report = TorchHealth.CheckWith(answers);

        report.Healthy.Should().BeFalse();
        TorchHealthResult failure = report.Failures.Should().ContainSingle().Subject;
        failure.Check.Should().Be("linear 37→29, batch 5");
        failure.Component.Should().Be("MKL sgemm (ATen addmm)");
        failure.RelativeError.Should().BeApproximately(0.01 / range, 1e-6);
        report.Summary.Should().Contain("1 of 5 known answers wrong").And.Contain("linear 37→29, batch 5").And.NotContain(Environment.NewLine);
        report.Remedy.Should().NotBeNull();
        if (report.OneDnnEnabled == false)
            report.Remedy.Should().Contain("No remedy is known to this library for MKL sgemm (ATen addmm)");
        else
            report.Remedy.Should().Contain(TorchHealthReport.EnvironmentRemedy);
    }

    [Fact]
    public void A_check_that_throws_or_returns_nan_or_the_wrong_length_fails_without_stopping_the_others()
    {
        var answers = KnownAnswers.All().ToArray();
        answers[0] = answers[0] with { Compute = () => throw new InvalidOperationException("could not create a primitive") };
        answers[1] = answers[1] with { Compute = () => Enumerable.Repeat(float.NaN, answers[1].Expected.Length).ToArray() };
        answers[3] = answers[3] with { Compute = () => new float[3] };

        TorchHealthReport report = TorchHealth.CheckWith(answers);

        report.Failures.Select(f => f.Check).Should().Equal(answers[0].Name, answers[1].Name, answers[3].Name);
        report.Failures.Should().OnlyContain(f => double.IsPositiveInfinity(f.RelativeError));
        report.Failures[0].Exception.Should().Be("could not create a primitive");
        report.Results[2].Passed.Should().BeTrue();
        report.Results[4].Passed.Should().BeTrue();
    }

    [Fact]
    public void Ensure_turns_onednn_off_only_when_that_makes_the_failing_checks_pass_and_says_so_once()
    {
        if (!AtenBackends.Available) return;   // another libtorch ABI: the remedy cannot be applied, nothing to test
        bool oneDnn = AtenBackends.OneDnn!.Value, nnpack = AtenBackends.Nnpack!.Value;
        try
        {
            // A check that is wrong exactly while oneDNN is on, as the convolutions are on an affected host; it routes like
            // a convolution. The Linear beside it is right either way.
            KnownAnswer linear = KnownAnswers.Linear(batch: 5, inputs: 37, outputs: 29);
            KnownAnswer conv = linear with
            {
                Name = "wrong while oneDNN is on",
                Operation = TorchOperation.Convolution,
                Compute = () => AtenBackends.OneDnn == true ? new float[linear.Expected.Length] : linear.Compute(),
            };
            KnownAnswer[] answers = [conv, linear];
            AtenBackends.TrySet(oneDnn: true, nnpack: true).Should().BeTrue();
            var log = new StringWriter();

            TorchHealthReport report = TorchHealth.EnsureWith(answers, log);

            report.Healthy.Should().BeTrue(report.ToString());
            report.OneDnnEnabled.Should().BeFalse();
            AtenBackends.OneDnn.Should().BeFalse();
            AtenBackends.Nnpack.Should().BeFalse("convolutions must take the path the checks cover");
            report.FailuresBeforeRemedy.Should().ContainSingle().Which.Component.Should().StartWith("oneDNN JIT convolution");
            report.RemedyApplied.Should().Contain("oneDNN and NNPACK off");
            report.Results[0].Component.Should().Be("ATen slow_conv2d (im2col + MKL sgemm)");
            log.ToString().Should().Contain("WARNING").And.Contain(conv.Name).And.Contain("all 2 pass now");
            log.ToString().TrimEnd().Split('\n').Should().ContainSingle("the warning is one line");

            // A failure that oneDNN does not cause: the switch goes back to on, and the report names no applied remedy.
            answers[0] = conv with { Compute = () => new float[conv.Expected.Length] };
            AtenBackends.TrySet(oneDnn: true, nnpack: true).Should().BeTrue();
            TorchHealthReport unfixed = TorchHealth.EnsureWith(answers, TextWriter.Null);
            unfixed.Healthy.Should().BeFalse();
            unfixed.RemedyApplied.Should().BeNull();
            AtenBackends.OneDnn.Should().BeTrue("turning oneDNN off did not help, so it is left as it was");
            AtenBackends.Nnpack.Should().BeTrue();

            // Healthy from the start: nothing changes, nothing is written.
            var quiet = new StringWriter();
            TorchHealth.EnsureWith([linear], quiet).RemedyApplied.Should().BeNull();
            quiet.ToString().Should().BeEmpty();
            AtenBackends.OneDnn.Should().BeTrue();
        }
        finally
        {
            AtenBackends.TrySet(oneDnn, nnpack);
        }
    }

    [Fact]
    public void On_a_host_that_hides_the_amd_cache_topology_onednn_gets_the_convolutions_and_the_lstm_wrong()
    {
        if (!AtenBackends.Available) return;
        bool oneDnn = AtenBackends.OneDnn!.Value, nnpack = AtenBackends.Nnpack!.Value;
        try
        {
            AtenBackends.TrySet(oneDnn: true, nnpack: false);
            TorchHealthReport withOneDnn = TorchHealth.Check();
            AtenBackends.TrySet(oneDnn: false, nnpack: false);
            TorchHealthReport withoutOneDnn = TorchHealth.Check();

            withoutOneDnn.Healthy.Should().BeTrue(withoutOneDnn.ToString());
            if (withOneDnn.CacheTopologyHidden)
            {
                // Measured on AMD family 26 model 2 under a hypervisor that answers CPUID 0x8000001D with zeros.
                withOneDnn.Failures.Select(f => f.Check).Should().Equal(
                    "conv2d 3×3, batch 2, 17→16 channels, 7×7", "conv2d 5×5, batch 1, 17→16 channels, 9×9", "LSTM 12→16, batch 3, 2 steps");
                withOneDnn.Failures.Should().OnlyContain(f => f.RelativeError > 1e-2 && f.Component.StartsWith("oneDNN", StringComparison.Ordinal));
                withOneDnn.Summary.Should().Contain("cache topology hidden");
            }
            else
                withOneDnn.Healthy.Should().BeTrue(withOneDnn.ToString());
        }
        finally
        {
            AtenBackends.TrySet(oneDnn, nnpack);
        }
    }

    [Fact]
    public void The_convolution_answers_are_the_sums_worked_by_hand()
    {
        // One 3×3 channel 1..9, a 3×3 kernel of ones, padding 1: each output is the sum of its neighbourhood.
        var geometry = new KnownAnswers.Geometry(Batch: 1, Channels: 1, Size: 3, Outputs: 1, Kernel: 3, Padding: 1);
        float[] x = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        float[] ones = Enumerable.Repeat(1f, 9).ToArray();
        geometry.Forward(x, ones).Should().Equal(12, 21, 16, 27, 45, 33, 24, 39, 28);

        // With g = 1 everywhere: dx counts the outputs each input reaches; dw sums the inputs under each tap.
        var (dx, dw) = geometry.Backward(x, ones, ones);
        dx.Should().Equal(4, 6, 4, 6, 9, 6, 4, 6, 4);
        dw.Should().Equal(12, 21, 16, 27, 45, 33, 24, 39, 28);   // tap (0, 0) sees rows 0–1, columns 0–1: 1 + 2 + 4 + 5
    }

    [Fact]
    public void The_lstm_answer_is_the_step_worked_by_hand()
    {
        // No weights, biases only: i = f = o = σ(0) = ½, g = tanh(1); c = ½·tanh(1), h = ½·tanh(c).
        double[] h = KnownAnswers.LstmReference(wIh: [0, 0, 0, 0], wHh: [0, 0, 0, 0], bIh: [0, 0, 1, 0], bHh: [0, 0, 0, 0],
            x: [0.5f], inputs: 1, hidden: 1, batch: 1, steps: 1);
        h.Should().ContainSingle().Which.Should().BeApproximately(0.18169974219, 1e-10);

        // A second step carries c: c₂ = ½·c₁ + ½·tanh(1).
        double[] two = KnownAnswers.LstmReference([0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0.5f, 0.5f], 1, 1, 1, 2);
        two[1].Should().BeApproximately(0.5 * Math.Tanh(0.75 * Math.Tanh(1)), 1e-12);
    }

    [Fact]
    public void The_check_leaves_torchs_generator_where_it_was()
    {
        torch.manual_seed(42);
        using Tensor expected = torch.rand(4);
        torch.manual_seed(42);
        TorchHealth.Check();
        using Tensor actual = torch.rand(4);
        actual.Equals(expected).Should().BeTrue();
    }
}
