using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Samples;

/// <summary>The convolutional networks the samples train on 28×28 Fashion-MNIST images.</summary>
public static class ConvNets
{
    /// <summary>
    /// conv(1→16)-BN-ReLU-pool, conv(16→32)-BN-ReLU-pool, conv(32→64)-BN-ReLU, global average pool, linear(64→10):
    /// the conv-BN CNN of samples/ChannelPruning and samples/AutoRatios, weights drawn from <paramref name="seed"/>.
    /// </summary>
    public static Sequential ConvBn(int seed)
    {
        torch.manual_seed(seed);
        return nn.Sequential(
            ("conv1", nn.Conv2d(1, 16, 3, padding: 1)), ("bn1", nn.BatchNorm2d(16)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(16, 32, 3, padding: 1)), ("bn2", nn.BatchNorm2d(32)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
            ("conv3", nn.Conv2d(32, 64, 3, padding: 1)), ("bn3", nn.BatchNorm2d(64)), ("relu3", nn.ReLU()), ("gap", nn.AdaptiveAvgPool2d(1)),
            ("flat", nn.Flatten()), ("fc", nn.Linear(64, 10)));
    }

    /// <summary>
    /// A MobileNet (v1) for 28×28 inputs: a 3×3 stem of <paramref name="stem"/> channels + BN + ReLU6, then per block a
    /// depthwise 3×3 (its stride) + BN + ReLU6 and a pointwise 1×1 to its channels + BN + ReLU6, global average pooling,
    /// a linear classifier to 10. Layers are named stem, dw{n}, pw{n} (with _bn and _relu), gap, flat, fc.
    /// </summary>
    public static Sequential MobileNet(int stem, IEnumerable<(int Channels, int Stride)> blocks)
    {
        var layers = new List<(string, nn.Module<Tensor, Tensor>)>
        {
            ("stem", nn.Conv2d(1, stem, 3, padding: 1, bias: false)), ("stem_bn", nn.BatchNorm2d(stem)), ("stem_relu", nn.ReLU6()),
        };
        int c = stem, block = 0;
        foreach (var (channels, stride) in blocks)
        {
            block++;
            layers.Add(($"dw{block}", nn.Conv2d(c, c, 3, stride: stride, padding: 1, groups: c, bias: false)));
            layers.Add(($"dw{block}_bn", nn.BatchNorm2d(c)));
            layers.Add(($"dw{block}_relu", nn.ReLU6()));
            layers.Add(($"pw{block}", nn.Conv2d(c, channels, 1, bias: false)));
            layers.Add(($"pw{block}_bn", nn.BatchNorm2d(channels)));
            layers.Add(($"pw{block}_relu", nn.ReLU6()));
            c = channels;
        }
        layers.AddRange([("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(c, 10))]);
        return nn.Sequential(layers);
    }
}
