using Pruning;
using Pruning.Samples;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>The conv-BN ×3 CNN of samples/ChannelPruning on Fashion-MNIST: building, training, accuracy.</summary>
internal static class Cnn
{
    public const int BatchSize = 128;
    public static readonly long[] Input = [1, 28, 28];

    public static Sequential Build(int seed) => ConvNets.ConvBn(seed);

    /// <summary>The model's channel groups, traced on two random images.</summary>
    public static Pruning.Structure.ChannelGraph Graph(nn.Module<Tensor, Tensor> model)
    {
        using var example = torch.randn([2, .. Input]);
        return Pruning.Structure.ChannelGraph.Trace(model, example);
    }

    /// <summary>MACs of one image through the model as it is.</summary>
    public static long Macs(nn.Module<Tensor, Tensor> model) => Graph(model).Macs();

    public static Sequential Copy(Sequential dense)
    {
        var copy = Build(1);
        copy.load_state_dict(dense.state_dict());
        copy.eval();
        return copy;
    }

    /// <summary>Adam on random batches of <paramref name="data"/>; the pruner, if any, steps after each update.</summary>
    public static void Train(Sequential model, FashionMnist data, long steps, double rate, GradualPruner? pruner, int seed) =>
        ImageTraining.Train(model, data, steps, rate, pruner, (ulong)(5000 + seed), BatchSize);

    /// <summary>
    /// <paramref name="evaluate"/> after re-estimating every BatchNorm's running statistics on <paramref name="batches"/>
    /// training batches (no gradients, cumulative average), then the statistics are put back. Pruning a conv shifts
    /// the statistics of its outputs; with the dense model's statistics almost every pruned CNN scores near chance, so
    /// a search's reward says nothing. Recalibrating costs a few forward passes.
    /// </summary>
    public static double WithRecalibratedBatchNorm(nn.Module model, FashionMnist data, int batches, Func<nn.Module, double> evaluate)
    {
        var norms = model.modules().OfType<BatchNorm>().ToList();
        var saved = norms.Select(bn => (bn.running_mean!.clone(), bn.running_var!.clone(), bn.num_batches_tracked!.clone(), bn.momentum)).ToList();
        try
        {
            using (torch.no_grad())
            {
                foreach (var bn in norms)
                {
                    bn.reset_running_stats();
                    bn.momentum = null;
                }
                model.train();
                var g = new Generator(77);
                for (int b = 0; b < batches; b++)
                {
                    using var scope = torch.NewDisposeScope();
                    Tensor idx = torch.randint(0, data.Count, [BatchSize], ScalarType.Int64, generator: g);
                    ((nn.Module<Tensor, Tensor>)model).call(data.Images.index_select(0, idx).reshape(-1, 1, 28, 28));
                }
                model.eval();
            }
            return evaluate(model);
        }
        finally
        {
            using (torch.no_grad())
                for (int i = 0; i < norms.Count; i++)
                {
                    var (mean, variance, tracked, momentum) = saved[i];
                    norms[i].running_mean!.copy_(mean);
                    norms[i].running_var!.copy_(variance);
                    norms[i].num_batches_tracked!.copy_(tracked);
                    norms[i].momentum = momentum;
                    mean.Dispose();
                    variance.Dispose();
                    tracked.Dispose();
                }
            model.eval();
        }
    }

    public static double Accuracy(nn.Module model, FashionMnist data) => data.Accuracy((nn.Module<Tensor, Tensor>)model, asImages: true);
}
