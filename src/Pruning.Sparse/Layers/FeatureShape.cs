namespace Pruning.Sparse.Layers;

/// <summary>
/// The shape of one sample's activations: channels × height × width. A feature vector is (features, 1, 1).
/// Inside a <see cref="SparseModel"/> activations are stored channel-major across the batch ([C, N, H, W]), so that
/// every layer is one matrix product over a contiguous batch.
/// </summary>
public readonly record struct FeatureShape
{
    /// <summary>Largest extent accepted for any dimension.</summary>
    public static int MaxExtent => 1 << 24;

    /// <summary>Creates a shape; every extent must be in [1, <see cref="MaxExtent"/>] and the total below 2³¹.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An extent is outside [1, <see cref="MaxExtent"/>] (names it).</exception>
    /// <exception cref="ArgumentException">The three extents together hold 2³¹ values or more.</exception>
    public FeatureShape(int channels, int height = 1, int width = 1)
    {
        Check(channels, nameof(channels));
        Check(height, nameof(height));
        Check(width, nameof(width));
        if ((long)channels * height * width > int.MaxValue)
            throw new ArgumentException($"A sample of channels × height × width = {channels}×{height}×{width} = {(long)channels * height * width} values is too large; at most {int.MaxValue} fit one sample.");
        Channels = channels;
        Height = height;
        Width = width;
    }

    private static void Check(int extent, string name)
    {
        if (extent < 1 || extent > MaxExtent)
            throw new ArgumentOutOfRangeException(name, extent, $"Must be in [1, {MaxExtent}].");
    }

    /// <summary>Channels (or features).</summary>
    public int Channels { get; }

    /// <summary>Height (1 for feature vectors).</summary>
    public int Height { get; }

    /// <summary>Width (1 for feature vectors).</summary>
    public int Width { get; }

    /// <summary>Values per sample.</summary>
    public int Size => Channels * Height * Width;

    /// <summary>Height × width.</summary>
    public int Plane => Height * Width;

    /// <summary>True for a feature vector (height and width 1).</summary>
    public bool IsVector => Height == 1 && Width == 1;

    /// <inheritdoc />
    public override string ToString() => IsVector ? $"[{Channels}]" : $"[{Channels}, {Height}, {Width}]";
}
