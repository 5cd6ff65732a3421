using System.Diagnostics;
using System.Globalization;
using TorchSharp;

namespace Pruning.Samples;

/// <summary>
/// The progress of a training run: step, loss, sparsity and the time left. On a terminal, one status line on
/// standard error, rewritten a few times a second and cleared at the end; when standard error is redirected (a log,
/// CI), a plain line every <see cref="PlainInterval"/>, so a short run writes none and a long one shows it is alive.
/// Standard output keeps only the results.
/// </summary>
public sealed class TrainingProgress : IDisposable
{
    /// <summary>How often a redirected run writes a line.</summary>
    public static readonly TimeSpan PlainInterval = TimeSpan.FromSeconds(30);

    private static readonly TimeSpan TerminalInterval = TimeSpan.FromMilliseconds(250);

    private readonly string _label;
    private readonly long _total;
    private readonly GradualPruner? _pruner;
    private readonly TextWriter _writer;
    private readonly bool _terminal;
    private readonly Func<TimeSpan> _clock;
    private TimeSpan _lastReport;
    private long _done;
    private int _width;

    /// <summary>Progress of <paramref name="totalSteps"/> steps, showing <paramref name="pruner"/>'s sparsity if given.</summary>
    public TrainingProgress(string label, long totalSteps, GradualPruner? pruner = null)
        : this(label, totalSteps, pruner, Console.Error, !Console.IsErrorRedirected, StartClock())
    {
    }

    internal TrainingProgress(string label, long totalSteps, GradualPruner? pruner, TextWriter writer, bool terminal, Func<TimeSpan> clock)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(totalSteps);
        (_label, _total, _pruner, _writer, _terminal, _clock) = (label, totalSteps, pruner, writer, terminal, clock);
    }

    private static Func<TimeSpan> StartClock()
    {
        var watch = Stopwatch.StartNew();
        return () => watch.Elapsed;
    }

    /// <summary>One step done; <paramref name="loss"/> is read (a sync) only when a line is due.</summary>
    public void Step(torch.Tensor loss) => Step(() => loss.item<float>());

    /// <summary>One step done; <paramref name="loss"/> is called only when a line is due.</summary>
    public void Step(Func<float> loss)
    {
        _done++;
        TimeSpan now = _clock();
        if (now - _lastReport < (_terminal ? TerminalInterval : PlainInterval) || _done == _total) return;
        _lastReport = now;
        string line = Line(loss(), now);
        if (_terminal)
        {
            _writer.Write($"\r{line.PadRight(_width)}");
            _width = Math.Max(_width, line.Length);
        }
        else
        {
            _writer.WriteLine(line);
        }
    }

    /// <summary>"label: step 1,200/4,300 (28 %), loss 0.412, sparsity 63.1 %, 0:41 left".</summary>
    internal string Line(float loss, TimeSpan elapsed)
    {
        TimeSpan left = TimeSpan.FromTicks((long)(elapsed.Ticks * (double)(_total - _done) / _done));
        string sparsity = _pruner is null ? "" : string.Create(CultureInfo.InvariantCulture, $", sparsity {_pruner.Report().Sparsity * 100:F1} %");
        return string.Create(CultureInfo.InvariantCulture,
            $"{_label}: step {_done:N0}/{_total:N0} ({100.0 * _done / _total:F0} %), loss {loss:F3}{sparsity}, {(int)left.TotalMinutes}:{left.Seconds:D2} left");
    }

    /// <summary>Clears the status line on a terminal.</summary>
    public void Dispose()
    {
        if (_terminal && _width > 0) _writer.Write($"\r{new string(' ', _width)}\r");
        _width = 0;
    }
}
