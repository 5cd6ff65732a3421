using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Samples.Language;

/// <summary>
/// A decoder-only transformer language model written as users write one in TorchSharp: token and learned position
/// embeddings, blocks of causal multi-head self-attention and a GELU MLP, a final LayerNorm (pre-LN) and a decoder.
/// The variants the runtime supports are constructor switches (the export tests run each): pre- or post-LN, one fused
/// q/k/v projection or three, exact or tanh GELU, a decoder tied to the token table. Tokens [batch, steps] in, logits
/// [batch, steps, vocabulary] out; the tests compile this file too.
/// </summary>
internal sealed class TransformerLanguageModel : nn.Module<Tensor, Tensor>
{
    private readonly Embedding tokens;
    private readonly Embedding positions;
    private readonly ModuleList<Block> blocks;
    private readonly LayerNorm? norm;
    private readonly Linear decoder;
    private readonly Dropout dropout;

    public TransformerLanguageModel(int vocabulary, int dimension, int heads, int layers, int context, double dropoutRate = 0,
        bool normFirst = true, bool fusedQkv = false, bool tanhGelu = false, bool tied = false) : base("transformer_lm")
    {
        Vocabulary = vocabulary;
        Context = context;
        tokens = nn.Embedding(vocabulary, dimension);
        positions = nn.Embedding(context, dimension);
        blocks = nn.ModuleList(Enumerable.Range(0, layers).Select(_ => new Block(dimension, heads, dropoutRate, normFirst, fusedQkv, tanhGelu)).ToArray());
        norm = normFirst ? nn.LayerNorm(dimension) : null;
        dropout = nn.Dropout(dropoutRate);
        decoder = nn.Linear(dimension, vocabulary);
        RegisterComponents();
        using var _ = torch.no_grad();
        foreach (var (name, p) in named_parameters())
            if (p.dim() == 2) p.normal_(0, 0.02);
            else if (name.EndsWith("bias", StringComparison.Ordinal)) p.zero_();
        if (tied) decoder.weight = tokens.weight!;
    }

    public int Vocabulary { get; }

    public int Context { get; }

    public override Tensor forward(Tensor input)
    {
        long steps = input.shape[1];
        if (steps > Context) throw new ArgumentException($"{steps} tokens pass the context of {Context}.", nameof(input));
        using var scope = torch.NewDisposeScope();
        Tensor x = dropout.call(tokens.call(input) + positions.call(torch.arange(steps, dtype: ScalarType.Int64)));
        foreach (Block block in blocks) x = block.call(x);
        if (norm is not null) x = norm.call(x);
        return decoder.call(x).MoveToOuterDisposeScope();
    }

    /// <summary>LayerNorm, attention, LayerNorm, MLP; residual adds around each sublayer.</summary>
    private sealed class Block : nn.Module<Tensor, Tensor>
    {
        private readonly LayerNorm norm1;
        private readonly Linear? qkv, query, key, value;
        private readonly Linear output;
        private readonly LayerNorm norm2;
        private readonly Linear up;
        private readonly Linear down;
        private readonly Dropout dropout;
        private readonly int _heads;
        private readonly bool _normFirst, _tanhGelu;

        public Block(int dimension, int heads, double dropoutRate, bool normFirst, bool fusedQkv, bool tanhGelu) : base("block")
        {
            _heads = heads;
            _normFirst = normFirst;
            _tanhGelu = tanhGelu;
            norm1 = nn.LayerNorm(dimension);
            if (fusedQkv) qkv = nn.Linear(dimension, 3 * dimension);
            else (query, key, value) = (nn.Linear(dimension, dimension), nn.Linear(dimension, dimension), nn.Linear(dimension, dimension));
            output = nn.Linear(dimension, dimension);
            norm2 = nn.LayerNorm(dimension);
            up = nn.Linear(dimension, 4 * dimension);
            down = nn.Linear(4 * dimension, dimension);
            dropout = nn.Dropout(dropoutRate);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            Tensor a = _normFirst ? norm1.call(x) : x;
            x = x + dropout.call(output.call(Attend(a)));
            if (!_normFirst) x = norm1.call(x);
            Tensor m = _normFirst ? norm2.call(x) : x;
            Tensor u = up.call(m);
            u = _tanhGelu ? 0.5 * u * (1 + torch.tanh(Math.Sqrt(2 / Math.PI) * (u + 0.044715 * u.pow(3)))) : nn.functional.gelu(u);
            x = x + dropout.call(down.call(u));
            return _normFirst ? x : norm2.call(x);
        }

        /// <summary>Causal multi-head attention: softmax(q·kᵀ/√(head size) with future positions masked)·v, heads concatenated.</summary>
        private Tensor Attend(Tensor x)
        {
            long batch = x.shape[0], steps = x.shape[1], d = x.shape[2], size = d / _heads;
            Tensor q, k, v;
            if (qkv is not null)
            {
                Tensor[] parts = qkv.call(x).chunk(3, -1);
                (q, k, v) = (parts[0], parts[1], parts[2]);
            }
            else (q, k, v) = (query!.call(x), key!.call(x), value!.call(x));
            Tensor Heads(Tensor t) => t.view(batch, steps, _heads, size).transpose(1, 2);
            Tensor scores = torch.matmul(Heads(q), Heads(k).transpose(-2, -1)) / Math.Sqrt(size);
            Tensor future = torch.ones(steps, steps, dtype: ScalarType.Bool).triu(1);
            Tensor weights = dropout.call(scores.masked_fill(future, float.NegativeInfinity).softmax(-1));
            return torch.matmul(weights, Heads(v)).transpose(1, 2).reshape(batch, steps, d);
        }
    }
}
