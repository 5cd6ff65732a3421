namespace Pruning.Export;

/// <summary>A convolution's geometry; <see cref="InChannels"/> counts all input channels, not those per group.</summary>
internal readonly record struct ConvGeometry(int InChannels, int Groups, (int H, int W) Kernel, (int H, int W) Stride,
    (int H, int W) Padding, (int H, int W) Dilation);
