using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Interop;

/// <summary>
/// The health check's computations. The shapes are the smallest found that libtorch 2.10 (oneDNN 3.7.1) got wrong on
/// an AMD Zen 5 host whose hypervisor hides the cache topology (docs/reference/installation.md): convolutions with more than 16
/// input channels that are not a multiple of 16 (3×3 from batch 2, 5×5 and larger from batch 1), their gradients, and
/// an LSTM whose hidden size is not a multiple of 32; plus a Linear, which goes to MKL. Inputs come from a fixed integer
/// hash, not from torch's generator, so running the check changes no seeded run.
/// </summary>
internal static class KnownAnswers
{
    /// <summary>The standard set; about 10 ms together once libtorch is loaded.</summary>
    public static IReadOnlyList<KnownAnswer> All() =>
    [
        Convolution(batch: 2, channels: 17, size: 7, outputs: 16, kernel: 3, padding: 1),
        Convolution(batch: 1, channels: 17, size: 9, outputs: 16, kernel: 5, padding: 2),
        ConvolutionGradients(batch: 2, channels: 17, size: 7, outputs: 16, kernel: 3, padding: 1),
        Lstm(inputs: 12, hidden: 16, batch: 3, steps: 2),
        Linear(batch: 5, inputs: 37, outputs: 29),
    ];

    public static KnownAnswer Convolution(int batch, int channels, int size, int outputs, int kernel, int padding)
    {
        var geometry = new Geometry(batch, channels, size, outputs, kernel, padding);
        float[] x = Values(batch * channels * size * size, seed: 1);
        float[] w = Values(outputs * channels * kernel * kernel, seed: 2);
        return new KnownAnswer($"conv2d {kernel}×{kernel}, batch {batch}, {channels}→{outputs} channels, {size}×{size}",
            TorchOperation.Convolution,
            () =>
            {
                using var scope = NewDisposeScope();
                using var _ = no_grad();
                return Floats(Conv(geometry, tensor(x, geometry.InputShape), tensor(w, geometry.WeightShape)));
            },
            geometry.Forward(x, w));
    }

    /// <summary>d/dx and d/dw of Σ y·g, concatenated.</summary>
    public static KnownAnswer ConvolutionGradients(int batch, int channels, int size, int outputs, int kernel, int padding)
    {
        var geometry = new Geometry(batch, channels, size, outputs, kernel, padding);
        float[] x = Values(batch * channels * size * size, seed: 3);
        float[] w = Values(outputs * channels * kernel * kernel, seed: 4);
        float[] g = Values(batch * outputs * geometry.Out * geometry.Out, seed: 5);
        var (dx, dw) = geometry.Backward(x, w, g);
        return new KnownAnswer($"conv2d {kernel}×{kernel} gradients, batch {batch}, {channels}→{outputs} channels, {size}×{size}",
            TorchOperation.ConvolutionBackward,
            () =>
            {
                using var scope = NewDisposeScope();
                using var _ = enable_grad();
                Tensor input = tensor(x, geometry.InputShape).requires_grad_();
                Tensor weight = tensor(w, geometry.WeightShape).requires_grad_();
                Conv(geometry, input, weight).mul(tensor(g, geometry.OutputShape)).sum().backward();
                return [.. Floats(input.grad!), .. Floats(weight.grad!)];
            },
            [.. dx, .. dw]);
    }

    /// <summary>A one-layer nn.LSTM from a zero state; the answer is every step's hidden state.</summary>
    public static KnownAnswer Lstm(int inputs, int hidden, int batch, int steps)
    {
        float[] wIh = Values(4 * hidden * inputs, seed: 6), wHh = Values(4 * hidden * hidden, seed: 7);
        float[] bIh = Values(4 * hidden, seed: 8), bHh = Values(4 * hidden, seed: 9);
        float[] x = Values(steps * batch * inputs, seed: 10);
        return new KnownAnswer($"LSTM {inputs}→{hidden}, batch {batch}, {steps} steps", TorchOperation.Lstm,
            () =>
            {
                using var scope = NewDisposeScope();
                using var _ = no_grad();
                // Creating the module initializes it from torch's generator; put the generator back as it was.
                Tensor generator = get_rng_state();
                using var lstm = nn.LSTM(inputs, hidden, 1);
                set_rng_state(generator);
                var values = new Dictionary<string, (float[] Data, long[] Shape)>
                {
                    ["weight_ih_l0"] = (wIh, [4 * hidden, inputs]),
                    ["weight_hh_l0"] = (wHh, [4 * hidden, hidden]),
                    ["bias_ih_l0"] = (bIh, [4 * hidden]),
                    ["bias_hh_l0"] = (bHh, [4 * hidden]),
                };
                foreach (var (name, parameter) in lstm.named_parameters())
                    parameter.copy_(tensor(values[name].Data, values[name].Shape));
                return Floats(lstm.call(tensor(x, [steps, batch, inputs])).Item1);
            },
            LstmReference(wIh, wHh, bIh, bHh, x, inputs, hidden, batch, steps));
    }

    public static KnownAnswer Linear(int batch, int inputs, int outputs)
    {
        float[] x = Values(batch * inputs, seed: 11), w = Values(outputs * inputs, seed: 12), b = Values(outputs, seed: 13);
        var expected = new double[batch * outputs];
        for (int n = 0; n < batch; n++)
            for (int o = 0; o < outputs; o++)
            {
                double sum = b[o];
                for (int i = 0; i < inputs; i++) sum += (double)x[n * inputs + i] * w[o * inputs + i];
                expected[n * outputs + o] = sum;
            }
        return new KnownAnswer($"linear {inputs}→{outputs}, batch {batch}", TorchOperation.Linear,
            () =>
            {
                using var scope = NewDisposeScope();
                using var _ = no_grad();
                return Floats(nn.functional.linear(tensor(x, [batch, inputs]), tensor(w, [outputs, inputs]), tensor(b, [outputs])));
            },
            expected);
    }

    /// <summary>Values in [−1, 1) on a grid of 1/128, from an integer hash of the index and seed.</summary>
    internal static float[] Values(int count, int seed)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            uint h = (uint)i * 0x9E3779B1u ^ (uint)seed * 0x85EBCA77u;
            h ^= h >> 15; h *= 0x2C1B3C6Du; h ^= h >> 12; h *= 0x297A2D39u; h ^= h >> 15;
            values[i] = ((int)(h % 256) - 128) / 128f;
        }
        return values;
    }

    internal static double[] LstmReference(float[] wIh, float[] wHh, float[] bIh, float[] bHh, float[] x, int inputs, int hidden, int batch, int steps)
    {
        var h = new double[batch * hidden];
        var c = new double[batch * hidden];
        var outputs = new double[steps * batch * hidden];
        var gates = new double[4];
        for (int t = 0; t < steps; t++)
        {
            var next = new double[batch * hidden];
            for (int n = 0; n < batch; n++)
                for (int j = 0; j < hidden; j++)
                {
                    for (int q = 0; q < 4; q++)   // PyTorch's gate order: input, forget, cell, output
                    {
                        int row = q * hidden + j;
                        double sum = (double)bIh[row] + bHh[row];
                        for (int k = 0; k < inputs; k++) sum += (double)wIh[row * inputs + k] * x[(t * batch + n) * inputs + k];
                        for (int k = 0; k < hidden; k++) sum += wHh[row * hidden + k] * h[n * hidden + k];
                        gates[q] = sum;
                    }
                    double cell = Sigmoid(gates[1]) * c[n * hidden + j] + Sigmoid(gates[0]) * Math.Tanh(gates[2]);
                    c[n * hidden + j] = cell;
                    next[n * hidden + j] = Sigmoid(gates[3]) * Math.Tanh(cell);
                    outputs[(t * batch + n) * hidden + j] = next[n * hidden + j];
                }
            h = next;
        }
        return outputs;
    }

    private static double Sigmoid(double v) => 1 / (1 + Math.Exp(-v));

    private static Tensor Conv(Geometry g, Tensor input, Tensor weight) =>
        nn.functional.conv2d(input, weight, null, strides: [1, 1], padding: [g.Padding, g.Padding]);

    private static float[] Floats(Tensor t) => t.contiguous().data<float>().ToArray();

    /// <summary>A square stride-1 convolution without bias, and its answers in double precision.</summary>
    internal readonly record struct Geometry(int Batch, int Channels, int Size, int Outputs, int Kernel, int Padding)
    {
        public int Out => Size + 2 * Padding - Kernel + 1;

        public long[] InputShape => [Batch, Channels, Size, Size];

        public long[] WeightShape => [Outputs, Channels, Kernel, Kernel];

        public long[] OutputShape => [Batch, Outputs, Out, Out];

        public double[] Forward(float[] x, float[] w)
        {
            var y = new double[Batch * Outputs * Out * Out];
            Visit((xi, wi, yi) => y[yi] += (double)x[xi] * w[wi]);
            return y;
        }

        public (double[] Dx, double[] Dw) Backward(float[] x, float[] w, float[] g)
        {
            var dx = new double[x.Length];
            var dw = new double[w.Length];
            Visit((xi, wi, yi) =>
            {
                dx[xi] += (double)g[yi] * w[wi];
                dw[wi] += (double)g[yi] * x[xi];
            });
            return (dx, dw);
        }

        /// <summary>Calls <paramref name="term"/> with the input, weight and output index of every product of the sum.</summary>
        private void Visit(Action<int, int, int> term)
        {
            for (int n = 0; n < Batch; n++)
                for (int o = 0; o < Outputs; o++)
                    for (int i = 0; i < Out; i++)
                        for (int j = 0; j < Out; j++)
                            for (int c = 0; c < Channels; c++)
                                for (int u = 0; u < Kernel; u++)
                                {
                                    int row = i - Padding + u;
                                    if (row < 0 || row >= Size) continue;
                                    for (int v = 0; v < Kernel; v++)
                                    {
                                        int column = j - Padding + v;
                                        if (column < 0 || column >= Size) continue;
                                        term(((n * Channels + c) * Size + row) * Size + column,
                                            ((o * Channels + c) * Kernel + u) * Kernel + v,
                                            ((n * Outputs + o) * Out + i) * Out + j);
                                    }
                                }
        }
    }
}
