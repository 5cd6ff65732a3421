using Pruning.Reconstruction;
using Pruning.Structure;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Tests.Reconstruction;

[Collection(TorchCollection.Name)]
public sealed class ChannelReconstructionTests
{
    private static List<Tensor> Inputs(int seed, int batches, int inputs = 16) =>
        Enumerable.Range(0, batches).Select(i => TestModels.Batch(seed * 100 + i, inputs: inputs).X).ToList();

    private static ChannelGraph Graph(nn.Module<Tensor, Tensor> model, params long[] shape)
    {
        using var example = torch.randn(shape);
        return ChannelGraph.Trace(model, example);
    }

    private static Tensor Outputs(nn.Module<Tensor, Tensor> model, IEnumerable<Tensor> inputs)
    {
        using var noGrad = torch.no_grad();
        return torch.cat(inputs.Select(x => model.call(x)).ToList());
    }

    [Theory]
    [InlineData(ChannelSelection.Greedy)]
    [InlineData(ChannelSelection.Lasso)]
    public void Removing_channels_that_were_already_zero_reproduces_the_output_exactly(ChannelSelection selection)
    {
        var model = TestModels.Mlp(1);
        using (torch.no_grad())
            foreach (int dead in new[] { 3, 17, 30 })
            {
                model.get_parameter("fc1.weight")![dead].zero_();
                model.get_parameter("fc1.bias")![dead].zero_();
            }
        var inputs = Inputs(2, 4);
        Tensor before = Outputs(model, inputs);
        var channels = Graph(model, 2, 16);

        var report = ChannelReconstruction.Prune(channels, new CalibrationSet(inputs), new ChannelReconstructionOptions
        {
            Sparsity = 0,
            Overrides = new Dictionary<string, double> { ["fc1"] = 3.0 / 32 },
            Selection = selection,
            Dampening = 1e-10,
        });

        report.Should().ContainSingle().Which.Kept.Should().Be(29);
        report[0].ErrorAfterRefit.Should().BeLessThan(1e-9);
        Outputs(model, inputs).sub(before).abs().max().item<float>().Should().BeLessThan(1e-5f);
        channels.ShrinkInPlace();
        ((Linear)model.named_children().First(c => c.name == "fc1").module).out_features.Should().Be(29);
        Outputs(model, inputs).sub(before).abs().max().item<float>().Should().BeLessThan(1e-5f);
    }

    [Theory]
    [InlineData(ChannelSelection.Greedy)]
    [InlineData(ChannelSelection.Lasso)]
    public void The_refit_and_the_choice_both_reduce_the_error_of_removing_half_the_channels(ChannelSelection selection)
    {
        var dense = TestModels.Mlp(3);
        var optimizer = TestModels.Optimizer("adam", dense);
        for (int step = 0; step < 40; step++) TestModels.TrainStep(dense, optimizer, step);
        var inputs = Inputs(4, 6);

        var model = TestModels.Mlp(3);
        model.load_state_dict(dense.state_dict());
        var report = ChannelReconstruction.Prune(Graph(model, 2, 16), new CalibrationSet(inputs),
            new ChannelReconstructionOptions { Sparsity = 0.5, Selection = selection });

        report.Select(r => (r.Producer, r.Kept)).Should().Equal(("fc1", 16), ("fc2", 12));
        foreach (var row in report)
            row.ErrorAfterRefit.Should().BeLessThan(0.5 * row.ErrorWithoutRefit, row.Producer);

        // The same count chosen by the smallest L1 norm of the producer's rows, without refit: a worse model.
        var naive = TestModels.Mlp(3);
        naive.load_state_dict(dense.state_dict());
        using (torch.no_grad())
            foreach (var (weight, bias, keepCount) in new[] { ("fc1.weight", "fc1.bias", 16), ("fc2.weight", "fc2.bias", 12) })
            {
                Tensor w = naive.get_parameter(weight)!;
                long[] order = w.abs().sum(1).argsort().data<long>().ToArray();
                foreach (long r in order.Take((int)w.shape[0] - keepCount))
                {
                    w[r].zero_();
                    naive.get_parameter(bias)![r].zero_();
                }
            }
        Tensor target = Outputs(dense, inputs);
        double reconstructed = Outputs(model, inputs).sub(target).pow(2).mean().item<float>();
        double byNorm = Outputs(naive, inputs).sub(target).pow(2).mean().item<float>();
        reconstructed.Should().BeLessThan(0.5 * byNorm);
    }

    [Fact]
    public void A_conv_chain_with_batch_norm_and_a_flattened_classifier_is_pruned_and_shrunk()
    {
        torch.manual_seed(5);
        var model = nn.Sequential(
            ("conv1", nn.Conv2d(1, 6, 3, padding: 1)), ("bn1", nn.BatchNorm2d(6)), ("relu1", nn.ReLU()), ("pool", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(6, 8, 3, padding: 1)), ("relu2", nn.ReLU()),
            ("flatten", nn.Flatten()), ("fc", nn.Linear(8 * 4 * 4, 3)));
        model.eval();
        var inputs = Enumerable.Range(0, 4).Select(i => torch.randn([16, 1, 8, 8], generator: new torch.Generator((ulong)(20 + i)))).ToList();
        var channels = Graph(model, 2, 1, 8, 8);
        var report = ChannelReconstruction.Prune(channels, new CalibrationSet(inputs), new ChannelReconstructionOptions { Sparsity = 0.5 });

        report.Select(r => (r.Producer, r.Consumer, r.Kept)).Should().Equal(("conv1", "conv2", 3), ("conv2", "fc", 4));
        Tensor masked = Outputs(model, inputs);
        channels.ShrinkInPlace();
        Outputs(model, inputs).sub(masked).abs().max().item<float>().Should().BeLessThan(1e-4f);
        ((Conv2d)model.named_children().First(c => c.name == "conv2").module).in_channels.Should().Be(3);
        ((Linear)model.named_children().First(c => c.name == "fc").module).in_features.Should().Be(4 * 16);
    }

    [Fact]
    public void In_a_resnet_only_the_groups_one_layer_reads_alone_are_reconstructed()
    {
        var model = Pruning.Tests.Structure.ChannelGraphTests.TinyResNet(8);
        model.eval();
        var graph = Graph(model, 2, 1, 12, 12);
        var inputs = Enumerable.Range(0, 3).Select(i => torch.randn([16, 1, 12, 12], generator: new torch.Generator((ulong)(40 + i)))).ToList();
        var report = ChannelReconstruction.Prune(graph, new CalibrationSet(inputs), new ChannelReconstructionOptions { Sparsity = 0.5 });

        // The stem's group (read by block1 and by block1's add) and block2's output group are several layers' input: left whole.
        report.Select(r => r.Producer).Should().Equal(graph.Groups.Where(g => g.Consumers.Count == 1).Select(g => g.Producers[0]));
        report.Should().NotBeEmpty().And.OnlyContain(r => r.Kept == r.Channels / 2);
        Tensor masked = Outputs(model, inputs);
        graph.ShrinkInPlace();
        Outputs(model, inputs).sub(masked).abs().max().item<float>().Should().BeLessThan(1e-4f);
    }

    [Fact]
    public void Bad_input_is_refused_naming_what_is_wrong()
    {
        var model = TestModels.Mlp(6);
        var channels = Graph(model, 2, 16);
        FluentActions.Invoking(() => ChannelReconstruction.Prune(channels, new CalibrationSet(Inputs(1, 1)),
                new ChannelReconstructionOptions { Sparsity = 0.5, Overrides = new Dictionary<string, double> { ["fc9"] = 0.5 } }))
            .Should().Throw<ArgumentException>().WithMessage("*'fc9'*not the first producer of a group*fc1, fc2*");
        FluentActions.Invoking(() => new ChannelReconstructionOptions { Sparsity = 1 }).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*Sparsity*");
        FluentActions.Invoking(() => ChannelReconstruction.Prune(channels, new CalibrationSet([]), new ChannelReconstructionOptions { Sparsity = 0.5 }))
            .Should().Throw<InvalidOperationException>().WithMessage("*no batches*");
        FluentActions.Invoking(() => ChannelReconstruction.Prune(channels, new CalibrationSet([torch.randn(2, 16)]), new ChannelReconstructionOptions { Sparsity = 0.5, Dampening = 0 }))
            .Should().Throw<InvalidOperationException>().WithMessage("*'fc2.weight'*singular*Dampening*");
    }
}
