namespace Pruning;
/// <summary>Placeholder.</summary>
public static class Placeholder { }
