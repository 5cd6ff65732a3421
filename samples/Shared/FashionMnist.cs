using System.Buffers.Binary;
using System.IO.Compression;
using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Samples;

/// <summary>Fashion-MNIST from IDX files (plain or .gz), as the Debian package dataset-fashion-mnist installs them.</summary>
public sealed class FashionMnist
{
    /// <summary>Where the Debian package puts the files.</summary>
    public const string DefaultDirectory = "/usr/share/datasets/fashion-mnist";

    /// <summary>The one command that installs the data on Debian/Ubuntu.</summary>
    public const string InstallHint = "sudo apt-get install dataset-fashion-mnist";

    private FashionMnist(Tensor images, Tensor labels)
    {
        Images = images;
        Labels = labels;
    }

    /// <summary>N×784 float32, normalised to zero mean and unit variance (Fashion-MNIST's mean 0.2860, std 0.3530).</summary>
    public Tensor Images { get; }

    /// <summary>N int64 labels in 0..9.</summary>
    public Tensor Labels { get; }

    /// <summary>Number of examples.</summary>
    public long Count => Labels.shape[0];

    /// <summary>Top-1 accuracy of <paramref name="model"/> in eval mode, 1,000 examples at a time.</summary>
    /// <param name="model">The classifier.</param>
    /// <param name="asImages">Feed N×1×28×28 images (for convolutions) instead of N×784 vectors.</param>
    public double Accuracy(nn.Module<Tensor, Tensor> model, bool asImages = false)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        model.eval();
        long correct = 0;
        for (long start = 0; start < Count; start += 1000)
        {
            long n = Math.Min(1000, Count - start);
            Tensor x = Images.narrow(0, start, n);
            if (asImages) x = x.reshape(-1, 1, 28, 28);
            correct += model.call(x).argmax(1).eq(Labels.narrow(0, start, n)).sum().item<long>();
        }
        return (double)correct / Count;
    }

    /// <summary>The first <paramref name="count"/> examples.</summary>
    public FashionMnist Take(long count) => Slice(0, count);

    /// <summary><paramref name="count"/> examples from <paramref name="start"/> on (a view, no copy).</summary>
    public FashionMnist Slice(long start, long count) => new(Images.narrow(0, start, count), Labels.narrow(0, start, count));

    /// <summary>Loads the training or test split from <paramref name="directory"/>.</summary>
    /// <exception cref="FileNotFoundException">The files are missing; the message says how to install them.</exception>
    /// <exception cref="InvalidDataException">A file is not a valid IDX file.</exception>
    public static FashionMnist Load(string directory, bool train)
    {
        string prefix = train ? "train" : "t10k";
        byte[] images = ReadIdx(Find(directory, $"{prefix}-images-idx3-ubyte"), 0x803, out int[] imageDims);
        byte[] labels = ReadIdx(Find(directory, $"{prefix}-labels-idx1-ubyte"), 0x801, out int[] labelDims);
        if (imageDims.Length != 3 || imageDims[1] != 28 || imageDims[2] != 28 || labelDims[0] != imageDims[0])
            throw new InvalidDataException($"Fashion-MNIST files in '{directory}' disagree: images [{string.Join(", ", imageDims)}], labels [{string.Join(", ", labelDims)}].");

        int n = imageDims[0];
        var pixels = new float[images.Length];
        for (int i = 0; i < pixels.Length; i++)
            pixels[i] = (images[i] / 255f - 0.2860f) / 0.3530f;
        var classes = labels.Select(b => (long)b).ToArray();
        if (classes.Any(c => c > 9))
            throw new InvalidDataException($"Fashion-MNIST labels in '{directory}' must be 0..9.");
        return new FashionMnist(torch.tensor(pixels, [n, 784]), torch.tensor(classes));
    }

    private static string Find(string directory, string name)
    {
        foreach (string candidate in new[] { name, name + ".gz" })
        {
            string path = Path.Combine(directory, candidate);
            if (File.Exists(path)) return path;
        }
        throw new FileNotFoundException(
            $"Fashion-MNIST file '{name}[.gz]' is not in '{directory}'. Install the data with: {InstallHint} (or pass --data DIR).",
            Path.Combine(directory, name));
    }

    private static byte[] ReadIdx(string path, int magic, out int[] dims)
    {
        using Stream file = File.OpenRead(path);
        using Stream stream = path.EndsWith(".gz", StringComparison.Ordinal) ? new GZipStream(file, CompressionMode.Decompress) : file;
        Span<byte> header = stackalloc byte[4];
        stream.ReadExactly(header);
        int actual = BinaryPrimitives.ReadInt32BigEndian(header);
        if (actual != magic)
            throw new InvalidDataException($"'{path}' is not an IDX file of the expected kind (magic 0x{actual:x8}, expected 0x{magic:x8}).");
        dims = new int[magic & 0xFF];
        long size = 1;
        for (int d = 0; d < dims.Length; d++)
        {
            stream.ReadExactly(header);
            dims[d] = BinaryPrimitives.ReadInt32BigEndian(header);
            if (dims[d] <= 0 || dims[d] > 10_000_000)
                throw new InvalidDataException($"'{path}' has an impossible dimension {dims[d]}.");
            size *= dims[d];
        }
        if (size > 1L << 30)
            throw new InvalidDataException($"'{path}' claims {size} bytes of data.");
        var data = new byte[size];
        try
        {
            stream.ReadExactly(data);
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"'{path}' is truncated: it should hold {size} bytes of data.");
        }
        return data;
    }
}
