using Pruning.Interop;
using System.Text.RegularExpressions;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Reconstruction;

/// <summary>
/// One step of sequential calibration: a module whose pruned weights are solved together from the inputs it sees. A
/// Linear or Conv2d is one stage; a stacked LSTM or GRU is one stage per layer, whose weight_ih and weight_hh are
/// solved from the layer's input sequence and its hidden states, computed with the layers below as already pruned.
/// </summary>
internal abstract partial class CalibrationStage
{
    private protected CalibrationStage(string module, nn.Module instance, IReadOnlyList<string> parameters)
    {
        Module = module;
        Instance = instance;
        Parameters = parameters;
    }

    /// <summary>The module's name in the model ("" for the model itself).</summary>
    public string Module { get; }

    /// <summary>The module.</summary>
    public nn.Module Instance { get; }

    /// <summary>The layer of a stacked recurrent module (0 otherwise): stages of one module run in layer order.</summary>
    public virtual int Layer => 0;

    /// <summary>The pruned weights solved at this stage, as full parameter names.</summary>
    public IReadOnlyList<string> Parameters { get; }

    /// <summary>Registers a pre-hook that passes each call's input and state (null for Linear and Conv2d) to <paramref name="onCall"/>.</summary>
    public abstract IDisposable Hook(Action<Tensor, object?> onCall);

    /// <summary>Adds one call's inputs to the covariance of each weight of this stage.</summary>
    public abstract void Record(Tensor input, object? state, IReadOnlyDictionary<string, InputCovariance> into);

    /// <summary>The stages of <paramref name="parameters"/> in <paramref name="model"/> (not yet in forward order).</summary>
    /// <exception cref="ArgumentException">A parameter does not belong to a module that can be calibrated; the message names it.</exception>
    public static IReadOnlyList<CalibrationStage> For(nn.Module model, IReadOnlyList<string> parameters, string method)
    {
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        modules[""] = model;
        var stages = new List<CalibrationStage>();
        var recurrent = new Dictionary<(string, int), List<string>>();
        var linear = new Dictionary<string, List<string>>();
        foreach (string name in parameters)
        {
            int dot = name.LastIndexOf('.');
            string owner = dot < 0 ? "" : name[..dot], local = name[(dot + 1)..];
            nn.Module module = modules.GetValueOrDefault(owner)
                ?? throw new ArgumentException($"{method} cannot find the module that owns '{name}'.", nameof(parameters));
            string Refuse(string why) => $"{method} cannot prune '{name}': {why} Exclude it from PruningOptions.Targets, or prune it with another criterion.";
            switch (module)
            {
                case Linear or Conv2d when local == "weight":
                    if (module is Conv2d conv) CheckConv(conv, Refuse);
                    (linear.TryGetValue(owner, out var list) ? list : linear[owner] = []).Add(name);
                    break;
                case LSTM or GRU:
                    Match match = RecurrentWeight().Match(local);
                    if (!match.Success)
                        throw new ArgumentException(Refuse($"of {module.GetType().Name} '{owner}' only weight_ih_lK and weight_hh_lK can be reconstructed (bidirectional and projected layers are not supported)."), nameof(parameters));
                    int layer = int.Parse(match.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
                    if (module.named_parameters(recurse: false).Any(p => p.name.EndsWith("_reverse", StringComparison.Ordinal) || p.name.StartsWith("weight_hr", StringComparison.Ordinal)))
                        throw new ArgumentException(Refuse($"{module.GetType().Name} '{owner}' is bidirectional or projected, which calibration does not support."), nameof(parameters));
                    (recurrent.TryGetValue((owner, layer), out var weights) ? weights : recurrent[(owner, layer)] = []).Add(name);
                    break;
                default:
                    throw new ArgumentException(Refuse($"it belongs to {module.GetType().Name} '{owner}', and only the weights of Linear, Conv2d (groups 1), LSTM and GRU layers have inputs to reconstruct from."), nameof(parameters));
            }
        }
        foreach (var (owner, names) in linear)
            stages.Add(new LinearStage(owner, modules[owner], names));
        foreach (var ((owner, layer), names) in recurrent.OrderBy(r => r.Key.Item2))
            stages.Add(new RecurrentStage(owner, modules[owner], layer, names.OrderBy(n => n.Contains("_hh_", StringComparison.Ordinal)).ToArray()));
        return stages;
    }

    private static void CheckConv(Conv2d conv, Func<string, string> refuse)
    {
        if (conv.groups != 1)
            throw new ArgumentException(refuse($"it is a grouped Conv2d (groups {conv.groups}); only groups 1 can be calibrated."), "parameters");
        if (conv.padding is null)
            throw new ArgumentException(refuse($"its Conv2d has symbolic padding ({conv.padding_type}); give it explicit padding."), "parameters");
        if (conv.padding_mode != PaddingModes.Zeros && conv.padding.Any(p => p != 0))
            throw new ArgumentException(refuse($"its Conv2d pads with {conv.padding_mode}; only zero padding can be calibrated."), "parameters");
    }

    /// <summary>For tests: layer <paramref name="layer"/>'s input sequence and step-start hidden states, [T, B, ·].</summary>
    internal static (Tensor LayerInput, Tensor Hidden) GateInputs(nn.Module module, int layer, Tensor input, object? state = null) =>
        RecurrentStage.Run(module, layer, input, state);

    [GeneratedRegex(@"^weight_(ih|hh)_l(\d+)$")]
    private static partial Regex RecurrentWeight();

    private sealed class Remover(Action remove) : IDisposable
    {
        private Action? _remove = remove;

        public void Dispose()
        {
            _remove?.Invoke();
            _remove = null;
        }
    }

    /// <summary>A Linear (inputs are the last dimension) or a Conv2d (inputs are the unfolded patches).</summary>
    private sealed class LinearStage(string module, nn.Module instance, IReadOnlyList<string> parameters) : CalibrationStage(module, instance, parameters)
    {
        public override IDisposable Hook(Action<Tensor, object?> onCall)
        {
            var typed = (nn.Module<Tensor, Tensor>)Instance;
            var handle = typed.register_forward_pre_hook((_, x) =>
            {
                onCall(x, null);
                return null!;
            });
            return new Remover(handle.remove);
        }

        public override void Record(Tensor input, object? state, IReadOnlyDictionary<string, InputCovariance> into)
        {
            using var scope = torch.NewDisposeScope();
            InputCovariance covariance = into[Parameters[0]];
            Tensor rows = Instance switch
            {
                Conv2d conv => Patches(conv, input),
                _ => input.reshape(-1, input.shape[^1]),
            };
            covariance.Add(rows);
        }

        private static Tensor Patches(Conv2d conv, Tensor input)
        {
            Tensor x = input.dim() == 3 ? input.unsqueeze(0) : input;
            Tensor columns = nn.functional.unfold(x, (conv.kernel_size[0], conv.kernel_size[1]), (conv.dilation[0], conv.dilation[1]),
                (conv.padding![0], conv.padding[1]), (conv.stride[0], conv.stride[1]));
            return columns.transpose(1, 2).reshape(-1, columns.shape[1]);
        }
    }

    /// <summary>
    /// Layer <see cref="Layer"/> of a stacked LSTM or GRU: the module's input is run through the layers below (with
    /// their current, possibly pruned, weights) to get this layer's input sequence and its hidden states.
    /// </summary>
    private sealed class RecurrentStage(string module, nn.Module instance, int layer, IReadOnlyList<string> parameters) : CalibrationStage(module, instance, parameters)
    {
        public override int Layer { get; } = layer;

        public override IDisposable Hook(Action<Tensor, object?> onCall)
        {
            switch (Instance)
            {
                case LSTM lstm:
                {
                    var handle = lstm.register_forward_pre_hook((_, x, state) =>
                    {
                        onCall(x, state);
                        return null;
                    });
                    return new Remover(handle.remove);
                }
                default:
                {
                    var handle = ((GRU)Instance).register_forward_pre_hook((_, x, state) =>
                    {
                        onCall(x, state);
                        return null;
                    });
                    return new Remover(handle.remove);
                }
            }
        }

        public override void Record(Tensor input, object? state, IReadOnlyDictionary<string, InputCovariance> into)
        {
            using var scope = torch.NewDisposeScope();
            var (layerInput, hidden) = Run(Instance, Layer, input, state);
            foreach (string name in Parameters.Where(into.ContainsKey))
                into[name].Add(name.Contains(".weight_ih_", StringComparison.Ordinal) || name.StartsWith("weight_ih_", StringComparison.Ordinal)
                    ? layerInput.reshape(-1, layerInput.shape[^1])
                    : hidden.reshape(-1, hidden.shape[^1]));
        }

        /// <summary>
        /// Runs layers 0..<paramref name="layer"/> of <paramref name="module"/> on <paramref name="input"/>: returns the
        /// input sequence of <paramref name="layer"/> [T, B, in] and the hidden state each of its steps starts from
        /// [T, B, hidden]. Dropout between layers is not applied (calibration runs the model in evaluation mode).
        /// </summary>
        internal static (Tensor LayerInput, Tensor Hidden) Run(nn.Module module, int layer, Tensor input, object? state)
        {
            bool lstm = module is LSTM;
            bool batchFirst = TorchInternals.BatchFirst(module);
            var p = module.named_parameters(recurse: false).ToDictionary(x => x.name, x => (Tensor)x.parameter);
            Tensor sequence = input.detach();
            bool unbatched = sequence.dim() == 2;
            if (unbatched) sequence = sequence.unsqueeze(1);
            else if (batchFirst) sequence = sequence.transpose(0, 1);
            long steps = sequence.shape[0], batch = sequence.shape[1];
            Tensor? h0 = null, c0 = null;
            switch (state)
            {
                case ValueTuple<Tensor, Tensor> hc:
                    (h0, c0) = hc;
                    break;
                case Tensor h:
                    h0 = h;
                    break;
            }
            if (unbatched)
            {
                h0 = h0?.unsqueeze(1);
                c0 = c0?.unsqueeze(1);
            }
            Tensor hiddenStates = null!;
            for (int l = 0; l <= layer; l++)
            {
                Tensor wIh = p[$"weight_ih_l{l}"].detach(), wHh = p[$"weight_hh_l{l}"].detach();
                Tensor? bIh = p.GetValueOrDefault($"bias_ih_l{l}")?.detach(), bHh = p.GetValueOrDefault($"bias_hh_l{l}")?.detach();
                long hiddenSize = wHh.shape[1];
                Tensor h = h0?[l].to(sequence.dtype) ?? torch.zeros(batch, hiddenSize, sequence.dtype, sequence.device);
                Tensor c = c0?[l].to(sequence.dtype) ?? torch.zeros(batch, hiddenSize, sequence.dtype, sequence.device);
                Tensor projected = sequence.matmul(wIh.t());
                if (bIh is not null) projected = projected.add(bIh);
                var outputs = new Tensor[steps];
                var starts = new Tensor[steps];
                for (long t = 0; t < steps; t++)
                {
                    starts[t] = h;
                    Tensor recurrentPart = h.mm(wHh.t());
                    if (bHh is not null) recurrentPart = recurrentPart.add(bHh);
                    if (lstm)
                    {
                        Tensor[] gates = projected[t].add(recurrentPart).chunk(4, 1);
                        c = gates[1].sigmoid().mul(c).add(gates[0].sigmoid().mul(gates[2].tanh()));
                        h = gates[3].sigmoid().mul(c.tanh());
                    }
                    else
                    {
                        Tensor[] x = projected[t].chunk(3, 1), r = recurrentPart.chunk(3, 1);
                        Tensor reset = x[0].add(r[0]).sigmoid(), update = x[1].add(r[1]).sigmoid();
                        Tensor candidate = x[2].add(reset.mul(r[2])).tanh();
                        h = candidate.add(update.mul(h.sub(candidate)));
                    }
                    outputs[t] = h;
                }
                if (l == layer)
                {
                    hiddenStates = torch.stack(starts);
                    return (sequence, hiddenStates);
                }
                sequence = torch.stack(outputs);
            }
            throw new InvalidOperationException("unreachable");
        }
    }
}
