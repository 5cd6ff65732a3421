namespace Pruning.Analysis.Amc;

/// <summary>
/// xoshiro256** with its state in the open, so a search can save it and resume with the very same draws
/// (<see cref="System.Random"/> cannot be saved). Exploration noise, warm-up actions and replay sampling all draw here.
/// </summary>
internal sealed class AmcRandom
{
    private ulong _s0, _s1, _s2, _s3;

    public AmcRandom(ulong seed)
    {
        ulong x = seed;
        _s0 = SplitMix(ref x);
        _s1 = SplitMix(ref x);
        _s2 = SplitMix(ref x);
        _s3 = SplitMix(ref x);
    }

    public ulong[] State
    {
        get => [_s0, _s1, _s2, _s3];
        set
        {
            if (value.Length != 4 || value.All(v => v == 0)) throw new ArgumentException("A generator state is four words, not all zero.", nameof(value));
            (_s0, _s1, _s2, _s3) = (value[0], value[1], value[2], value[3]);
        }
    }

    public ulong NextUInt64()
    {
        ulong result = RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, 1), 53 bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform in [0, <paramref name="count"/>).</summary>
    public int Next(int count) => (int)(NextDouble() * count);

    /// <summary>Standard normal (Box–Muller; one of the pair is used).</summary>
    public double NextNormal()
    {
        double u1 = 1 - NextDouble(), u2 = NextDouble();
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    /// <summary>Normal(<paramref name="mean"/>, <paramref name="sd"/>) truncated to [low, high], by rejection (AMC's truncnorm).</summary>
    public double NextTruncatedNormal(double mean, double sd, double low, double high)
    {
        if (sd <= 0) return Math.Clamp(mean, low, high);
        for (int attempt = 0; attempt < 1000; attempt++)
        {
            double x = mean + sd * NextNormal();
            if (x >= low && x <= high) return x;
        }
        return Math.Clamp(mean, low, high);
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static ulong RotateLeft(ulong x, int k) => (x << k) | (x >> (64 - k));
}
