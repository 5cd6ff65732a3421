using Pruning.Samples;

namespace Samples.Tests;

/// <summary>The samples' progress line: a rewritten status on a terminal, plain lines every 30 s when redirected.</summary>
public class TrainingProgressTests
{
    [Fact]
    public void Redirected_it_writes_a_plain_line_every_30_seconds_with_step_loss_and_time_left_and_none_at_the_end()
    {
        var clock = TimeSpan.Zero;
        var writer = new StringWriter();
        using (var progress = new TrainingProgress("MLP", 100, null, writer, terminal: false, () => clock))
        {
            for (int step = 1; step <= 100; step++)
            {
                clock = TimeSpan.FromSeconds(step);            // one second a step
                progress.Step(() => 0.5f / step);
            }
        }
        writer.ToString().Should().Be(
            "MLP: step 30/100 (30 %), loss 0.017, 1:10 left" + Environment.NewLine +
            "MLP: step 60/100 (60 %), loss 0.008, 0:40 left" + Environment.NewLine +
            "MLP: step 90/100 (90 %), loss 0.006, 0:10 left" + Environment.NewLine);
    }

    [Fact]
    public void On_a_terminal_it_rewrites_one_line_and_clears_it_at_the_end_reading_the_loss_only_when_due()
    {
        var clock = TimeSpan.Zero;
        var writer = new StringWriter();
        int reads = 0;
        using (var progress = new TrainingProgress("CNN", 1000, null, writer, terminal: true, () => clock))
        {
            for (int step = 1; step <= 1000; step++)
            {
                clock = TimeSpan.FromMilliseconds(10 * step);   // 10 ms a step: a line every 25 steps
                progress.Step(() => { reads++; return 1f; });
            }
        }
        reads.Should().Be(39, "a status every 250 ms over 10 s, none at the last step");
        string output = writer.ToString();
        output.Should().NotContain(Environment.NewLine);
        output.Should().StartWith("\rCNN: step 25/1,000 (2 %), loss 1.000, 0:09 left");
        output.Should().EndWith("\r" + new string(' ', "CNN: step 975/1,000 (98 %), loss 1.000, 0:00 left".Length) + "\r");
    }
}
