using Pruning.Interop;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pruning.Analysis.Amc;

/// <summary>
/// The DDPG agent of AMC (Lillicrap et al. 2016; He et al. 2018): an actor μ(s) ∈ [0, 1] and a critic Q(s, a), both
/// MLPs with two hidden layers, target copies updated softly (τ), trained from a replay buffer with Adam. Its own
/// Adam keeps the moments in the open so a search checkpoint can carry them; every Scalar it passes is held for the
/// agent's lifetime (TorchSharp 0.107's Scalar race).
/// </summary>
internal sealed class DdpgAgent : IDisposable
{
    private const double Beta1 = 0.9, Beta2 = 0.999, Epsilon = 1e-8;
    private readonly Sequential _actor, _critic, _actorTarget, _criticTarget;
    private readonly Adam _actorAdam, _criticAdam;
    private readonly double _tau, _discount;
    private readonly Scalar _keep, _blend;

    public DdpgAgent(int stateSize, int hidden, double actorRate, double criticRate, double tau, double discount, ulong seed)
    {
        var generator = new Generator(seed);
        _actor = Mlp(stateSize, hidden, sigmoid: true, generator);
        _critic = Mlp(stateSize + 1, hidden, sigmoid: false, generator);
        _actorTarget = Mlp(stateSize, hidden, sigmoid: true, generator);
        _criticTarget = Mlp(stateSize + 1, hidden, sigmoid: false, generator);
        Copy(_actor, _actorTarget);
        Copy(_critic, _criticTarget);
        _actorAdam = new Adam(_actor, actorRate);
        _criticAdam = new Adam(_critic, criticRate);
        (_tau, _discount) = (tau, discount);
        _keep = (1 - tau).ToScalar();
        _blend = tau.ToScalar();
    }

    /// <summary>Every tensor a checkpoint must carry, in a fixed order: the four networks' parameters, then both Adams' moments.</summary>
    public IReadOnlyList<Tensor> StateTensors =>
        [.. Parameters(_actor), .. Parameters(_critic), .. Parameters(_actorTarget), .. Parameters(_criticTarget),
         .. _actorAdam.Moments, .. _criticAdam.Moments];

    /// <summary>The Adam step counts (actor, critic).</summary>
    public (long Actor, long Critic) Steps
    {
        get => (_actorAdam.Step, _criticAdam.Step);
        set => (_actorAdam.Step, _criticAdam.Step) = value;
    }

    /// <summary>μ(s), the action without exploration noise.</summary>
    public double Act(float[] state)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        return _actor.call(torch.tensor(state).unsqueeze(0)).item<float>();
    }

    /// <summary>Q(s, a), for tests and diagnostics.</summary>
    public double Value(float[] state, double action)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        return _critic.call(torch.tensor([.. state, (float)action]).unsqueeze(0)).item<float>();
    }

    /// <summary>
    /// One critic step towards r − baseline + γ·(1 − done)·Q'(s', μ'(s')), one actor step up Q(s, μ(s)), then the soft
    /// update of both targets.
    /// </summary>
    public void Update(IReadOnlyList<Transition> batch, double baseline)
    {
        using var scope = torch.NewDisposeScope();
        int n = batch.Count, size = batch[0].State.Length;
        Tensor s = torch.tensor(batch.SelectMany(t => t.State).ToArray(), [n, size]);
        Tensor next = torch.tensor(batch.SelectMany(t => t.Next).ToArray(), [n, size]);
        Tensor a = torch.tensor(batch.Select(t => t.Action).ToArray(), [n, 1]);
        Tensor r = torch.tensor(batch.Select(t => (float)(t.Reward - baseline)).ToArray(), [n, 1]);
        Tensor live = torch.tensor(batch.Select(t => t.Done ? 0f : (float)_discount).ToArray(), [n, 1]);
        Tensor target;
        using (torch.no_grad())
            target = r.add(live.mul(_criticTarget.call(torch.cat([next, _actorTarget.call(next)], 1))));

        _critic.zero_grad();
        nn.functional.mse_loss(_critic.call(torch.cat([s, a], 1)), target).backward();
        _criticAdam.Apply();

        _actor.zero_grad();
        _critic.zero_grad();
        _critic.call(torch.cat([s, _actor.call(s)], 1)).mean().neg().backward();
        _actorAdam.Apply();
        _critic.zero_grad();

        SoftUpdate(_actor, _actorTarget);
        SoftUpdate(_critic, _criticTarget);
    }

    /// <summary>target ← (1 − τ)·target + τ·source.</summary>
    internal void SoftUpdate(nn.Module source, nn.Module target)
    {
        using var noGrad = torch.no_grad();
        foreach (var (from, to) in Parameters(source).Zip(Parameters(target)))
            to.mul_(_keep).add_(from, _blend);
    }

    /// <summary>The actor, for tests.</summary>
    internal Sequential Actor => _actor;

    /// <summary>The actor's target, for tests.</summary>
    internal Sequential ActorTarget => _actorTarget;

    private static IEnumerable<Parameter> Parameters(nn.Module module) => module.parameters();

    private static Sequential Mlp(int inputs, int hidden, bool sigmoid, Generator generator)
    {
        var layers = new List<(string, nn.Module<Tensor, Tensor>)>
        {
            ("fc1", nn.Linear(inputs, hidden)), ("relu1", nn.ReLU()),
            ("fc2", nn.Linear(hidden, hidden)), ("relu2", nn.ReLU()),
            ("fc3", nn.Linear(hidden, 1)),
        };
        if (sigmoid) layers.Add(("sigmoid", nn.Sigmoid()));
        var model = nn.Sequential(layers);
        // PyTorch's default Linear initialization, U(−1/√fan_in, 1/√fan_in), drawn from the agent's own generator;
        // the output layer starts small (±3e-3), as DDPG's paper and AMC do.
        using var noGrad = torch.no_grad();
        foreach (var (name, p) in model.named_parameters())
        {
            long fanIn = name.StartsWith("fc1", StringComparison.Ordinal) ? inputs : hidden;
            double bound = name.StartsWith("fc3", StringComparison.Ordinal) ? 3e-3 : 1 / Math.Sqrt(fanIn);
            p.uniform_(-bound, bound, generator);
        }
        return model;
    }

    private static void Copy(nn.Module from, nn.Module to)
    {
        using var noGrad = torch.no_grad();
        foreach (var (a, b) in Parameters(from).Zip(Parameters(to))) b.copy_(a);
    }

    public void Dispose()
    {
        _actorAdam.Dispose();
        _criticAdam.Dispose();
        foreach (var m in new[] { _actor, _critic, _actorTarget, _criticTarget }) m.Dispose();
        _keep.Dispose();
        _blend.Dispose();
    }

    /// <summary>Adam with bias correction; the moments are tensors of the parameters' shapes.</summary>
    private sealed class Adam : IDisposable
    {
        private readonly Parameter[] _parameters;
        private readonly Tensor[] _m, _v;
        private readonly double _rate;
        private readonly Scalar _beta1, _oneMinusBeta1, _beta2, _oneMinusBeta2, _epsilon;

        public Adam(nn.Module module, double rate)
        {
            _parameters = module.parameters().ToArray();
            _m = _parameters.Select(p => torch.zeros_like(p)).ToArray();
            _v = _parameters.Select(p => torch.zeros_like(p)).ToArray();
            _rate = rate;
            (_beta1, _oneMinusBeta1, _beta2, _oneMinusBeta2, _epsilon) =
                (Beta1.ToScalar(), (1 - Beta1).ToScalar(), Beta2.ToScalar(), (1 - Beta2).ToScalar(), Epsilon.ToScalar());
        }

        public long Step { get; set; }

        public IEnumerable<Tensor> Moments => _m.Concat(_v);

        public void Apply()
        {
            Step++;
            double size = _rate * Math.Sqrt(1 - Math.Pow(Beta2, Step)) / (1 - Math.Pow(Beta1, Step));
            using var negativeSize = (-size).ToScalar();
            using var noGrad = torch.no_grad();
            for (int i = 0; i < _parameters.Length; i++)
            {
                using Tensor? g = _parameters[i].grad;
                if (g is null) continue;
                _m[i].mul_(_beta1).add_(g, _oneMinusBeta1);
                _v[i].mul_(_beta2).addcmul_(g, g, _oneMinusBeta2);
                using Tensor denominator = _v[i].sqrt().add_(_epsilon);
                _parameters[i].addcdiv_(_m[i], denominator, negativeSize);
            }
        }

        public void Dispose()
        {
            foreach (Tensor t in _m.Concat(_v)) t.Dispose();
            foreach (Scalar s in new[] { _beta1, _oneMinusBeta1, _beta2, _oneMinusBeta2, _epsilon }) s.Dispose();
        }
    }
}
