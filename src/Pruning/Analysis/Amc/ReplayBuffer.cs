namespace Pruning.Analysis.Amc;

/// <summary>One step of an episode: state, the action applied (after the budget clip), the episode's reward, the next state.</summary>
internal sealed record Transition(float[] State, float Action, float Reward, float[] Next, bool Done);

/// <summary>A fixed-capacity ring of transitions; the oldest is overwritten once full. Batches are drawn uniformly, with replacement.</summary>
internal sealed class ReplayBuffer
{
    private readonly Transition[] _items;
    private int _next;

    public ReplayBuffer(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        _items = new Transition[capacity];
    }

    public int Capacity => _items.Length;

    public int Count { get; private set; }

    public void Add(Transition transition)
    {
        _items[_next] = transition;
        _next = (_next + 1) % _items.Length;
        Count = Math.Min(Count + 1, _items.Length);
    }

    public Transition[] Sample(int size, AmcRandom random)
    {
        if (Count == 0) throw new InvalidOperationException("The replay buffer is empty.");
        var batch = new Transition[size];
        for (int i = 0; i < size; i++) batch[i] = _items[random.Next(Count)];
        return batch;
    }

    /// <summary>The transitions oldest first (for saving).</summary>
    public IEnumerable<Transition> InOrder()
    {
        int start = Count < _items.Length ? 0 : _next;
        for (int i = 0; i < Count; i++) yield return _items[(start + i) % _items.Length];
    }
}
