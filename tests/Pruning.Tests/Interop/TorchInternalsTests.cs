using Pruning.Interop;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Interop;

/// <summary>
/// The one adapter to TorchSharp's private state: on the TorchSharp the library was written for every member is where
/// it was (a TorchSharp upgrade that moves one fails here, naming it), and each accessor reads and writes what it says.
/// </summary>
[Collection(TorchCollection.Name)]
public class TorchInternalsTests
{
    [Fact]
    public void Every_private_member_the_library_reaches_exists_in_this_TorchSharp() =>
        TorchInternals.Missing().Should().BeEmpty("a TorchSharp upgrade moved these; Interop/TorchInternals must follow it");

    [Theory]
    [InlineData("Conv2d", "out_channels")]
    [InlineData("Conv2d", "in_channels")]
    [InlineData("BatchNorm1d", "num_features")]
    [InlineData("BatchNorm2d", "num_features")]
    public void Channel_counts_are_written_where_the_public_properties_read_them(string module, string property)
    {
        nn.Module instance = module switch
        {
            "Conv2d" => nn.Conv2d(2, 3, 1),
            "BatchNorm1d" => nn.BatchNorm1d(3),
            _ => nn.BatchNorm2d(3),
        };
        TorchInternals.RequireCounts(instance, property);
        TorchInternals.SetCount(instance, property, 7);
        long read = instance switch
        {
            Conv2d c => property == "in_channels" ? c.in_channels : c.out_channels,
            BatchNorm b => b.num_features,
            _ => -1,
        };
        read.Should().Be(7);
        FluentActions.Invoking(() => TorchInternals.RequireCounts(nn.Linear(2, 3), "in_channels")).Should().Throw<NotSupportedException>()
            .WithMessage("*Linear keeps no '<in_channels>k__BackingField' field*Nothing was changed*");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Batch_first_is_read_from_lstm_and_gru(bool batchFirst)
    {
        TorchInternals.BatchFirst(nn.LSTM(3, 4, batchFirst: batchFirst)).Should().Be(batchFirst);
        TorchInternals.BatchFirst(nn.GRU(3, 4, batchFirst: batchFirst)).Should().Be(batchFirst);
    }

    [Fact]
    public void Optimizer_buffers_are_the_live_state_tensors_and_unsupported_states_are_null()
    {
        var linear = nn.Linear(3, 2);
        var adam = optim.Adam(linear.parameters(), 0.1);
        linear.call(torch.ones(1, 3)).sum().backward();
        adam.step();
        var state = ((OptimizerHelper)adam).state_dict().State[0];
        var buffers = TorchInternals.ZeroInitialisedBuffersOf(state)!;
        buffers.Should().HaveCount(3);
        Tensor expAvg = buffers[0]()!;
        expAvg.abs().sum().item<float>().Should().BeGreaterThan(0);
        expAvg.zero_();
        ((Adam.State)state).exp_avg.abs().sum().item<float>().Should().Be(0, "the reader returns the optimizer's own tensor, not a copy");
        var rprop = optim.Rprop(linear.parameters());
        TorchInternals.ZeroInitialisedBuffersOf(((OptimizerHelper)rprop).state_dict().State[0]).Should().BeNull();
    }
}
