using System.Text.RegularExpressions;
using static TorchSharp.torch;

namespace Pruning.Targets;

/// <summary>
/// Which parameters of a model are pruned. Immutable: each method returns a new selection.
/// </summary>
/// <remarks>
/// Candidates are the parameters with two or more dimensions: the weights of Linear, Conv1d/2d/3d, Embedding and
/// the <c>weight_ih_l*</c>/<c>weight_hh_l*</c> matrices of LSTM/GRU/RNN. Biases and normalization layers
/// (BatchNorm, LayerNorm, GroupNorm: all one-dimensional) are never candidates.
/// <see cref="Include"/> and <see cref="OfModuleType{TModule}"/> narrow the candidates; <see cref="Exclude"/> removes
/// from them. Patterns are globs over the full parameter name: <c>*</c> matches any run of characters (dots
/// included), <c>?</c> one character; a pattern must match the whole name. A pattern or module type that matches no
/// candidate is an error, so a typo never silently prunes nothing.
/// </remarks>
public sealed class PruningTargets
{
    private readonly IReadOnlyList<string> _include;
    private readonly IReadOnlyList<string> _exclude;
    private readonly IReadOnlyList<Type> _moduleTypes;

    private PruningTargets(IReadOnlyList<string> include, IReadOnlyList<string> exclude, IReadOnlyList<Type> moduleTypes)
    {
        _include = include;
        _exclude = exclude;
        _moduleTypes = moduleTypes;
    }

    /// <summary>Every candidate: all parameters with two or more dimensions.</summary>
    public static PruningTargets Default { get; } = new([], [], []);

    /// <summary>Keeps only candidates whose name matches one of the included patterns.</summary>
    /// <param name="patterns">Globs over full parameter names, e.g. <c>fc1.weight</c> or <c>lstm.weight_hh_l*</c>.</param>
    public PruningTargets Include(params string[] patterns) => new([.. _include, .. Validate(patterns)], _exclude, _moduleTypes);

    /// <summary>Removes candidates whose name matches one of the patterns (e.g. keep the first conv and the classifier dense).</summary>
    /// <param name="patterns">Globs over full parameter names.</param>
    public PruningTargets Exclude(params string[] patterns) => new(_include, [.. _exclude, .. Validate(patterns)], _moduleTypes);

    /// <summary>Keeps only parameters owned by modules of type <typeparamref name="TModule"/> (or of another type named in an earlier call).</summary>
    /// <typeparam name="TModule">A module type such as <c>TorchSharp.Modules.Linear</c>.</typeparam>
    public PruningTargets OfModuleType<TModule>() where TModule : nn.Module => new(_include, _exclude, [.. _moduleTypes, typeof(TModule)]);

    /// <summary>Resolves the selection against <paramref name="model"/>: the names of the parameters to prune, in model order.</summary>
    /// <exception cref="ArgumentException">A pattern or module type matches nothing, or nothing is left to prune.</exception>
    public IReadOnlyList<string> Resolve(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var candidates = new List<(string Name, Type Owner)>();
        foreach (var (name, owner) in OwnedParameters(model))
            if (owner.Parameter.dim() >= 2)
                candidates.Add((name, owner.Module.GetType()));

        string Available() => candidates.Count == 0 ? "(none)" : string.Join(", ", candidates.Select(c => c.Name));

        foreach (Type type in _moduleTypes)
            if (!candidates.Any(c => type.IsAssignableFrom(c.Owner)))
                throw new ArgumentException($"No prunable parameter is owned by a {type.Name}. Candidates: {Available()}.", nameof(model));
        var includes = _include.Select(p => (Pattern: p, Regex: Glob(p))).ToList();
        var excludes = _exclude.Select(p => (Pattern: p, Regex: Glob(p))).ToList();
        foreach (var (pattern, regex) in includes.Concat(excludes))
            if (!candidates.Any(c => regex.IsMatch(c.Name)))
                throw new ArgumentException($"The target pattern '{pattern}' matches no prunable parameter. Candidates: {Available()}.", nameof(model));

        var selected = candidates
            .Where(c => _moduleTypes.Count == 0 || _moduleTypes.Any(t => t.IsAssignableFrom(c.Owner)))
            .Where(c => includes.Count == 0 || includes.Any(i => i.Regex.IsMatch(c.Name)))
            .Where(c => !excludes.Any(e => e.Regex.IsMatch(c.Name)))
            .Select(c => c.Name)
            .ToList();
        if (selected.Count == 0)
            throw new ArgumentException($"The target selection leaves nothing to prune. Candidates: {Available()}.", nameof(model));
        return selected;
    }

    /// <inheritdoc />
    public override string ToString()
    {
        var parts = new List<string>();
        if (_moduleTypes.Count > 0) parts.Add("modules: " + string.Join(", ", _moduleTypes.Select(t => t.Name)));
        if (_include.Count > 0) parts.Add("include: " + string.Join(", ", _include));
        if (_exclude.Count > 0) parts.Add("exclude: " + string.Join(", ", _exclude));
        return parts.Count == 0 ? "all weights with 2+ dimensions" : string.Join("; ", parts);
    }

    private static IEnumerable<(string Name, (nn.Module Module, TorchSharp.Modules.Parameter Parameter))> OwnedParameters(nn.Module model)
    {
        foreach (var (name, p) in model.named_parameters(recurse: false))
            yield return (name, (model, p));
        foreach (var (prefix, module) in model.named_modules())
            foreach (var (name, p) in module.named_parameters(recurse: false))
                yield return ($"{prefix}.{name}", (module, p));
    }

    private static string[] Validate(string[] patterns)
    {
        ArgumentNullException.ThrowIfNull(patterns);
        foreach (string p in patterns)
            if (string.IsNullOrWhiteSpace(p))
                throw new ArgumentException("A target pattern must not be empty.", nameof(patterns));
        return patterns;
    }

    private static Regex Glob(string pattern) =>
        new("^" + Regex.Escape(pattern).Replace(@"\*", ".*").Replace(@"\?", ".") + "$", RegexOptions.CultureInvariant);
}
