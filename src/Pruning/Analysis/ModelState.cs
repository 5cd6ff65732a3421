using TorchSharp;
using static TorchSharp.torch;

namespace Pruning.Analysis;

/// <summary>
/// Copies of a model's parameters and buffers (e.g. BatchNorm running statistics), so that every NetAdapt proposal
/// starts from the same state and the best one can be put back.
/// </summary>
internal static class ModelState
{
    private const string BufferPrefix = "buffer:";

    public static Dictionary<string, Tensor> Snapshot(nn.Module model)
    {
        using var _ = torch.no_grad();
        var state = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        foreach (var (name, buffer) in model.named_buffers()) state[BufferPrefix + name] = buffer.detach().clone();
        return state;
    }

    public static void Restore(nn.Module model, Dictionary<string, Tensor> state)
    {
        using var _ = torch.no_grad();
        foreach (var (name, p) in model.named_parameters()) p.copy_(state[name]);
        foreach (var (name, b) in model.named_buffers()) b.copy_(state[BufferPrefix + name]);
    }

    public static void DisposeState(Dictionary<string, Tensor>? state)
    {
        if (state is null) return;
        foreach (Tensor t in state.Values) t.Dispose();
    }
}
