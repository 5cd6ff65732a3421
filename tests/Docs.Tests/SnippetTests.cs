using System.Reflection;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace Docs.Tests;

/// <summary>
/// Every C# snippet in the README and in docs/ compiles as printed, usings included, against the packages' assemblies:
/// a reader who copies one gets a program that builds.
/// </summary>
public class SnippetTests
{
    private static readonly string Root = FindRoot();

    public static TheoryData<string, int> Snippets()
    {
        var data = new TheoryData<string, int>();
        foreach (string file in Pages())
            for (int i = 0; i < Extract(Path.Combine(Root, file)).Count; i++) data.Add(file, i);
        return data;
    }

    [Fact]
    public void The_readme_and_every_docs_page_with_code_have_csharp_snippets_to_check()
    {
        Extract(Path.Combine(Root, "README.md")).Should().HaveCountGreaterThanOrEqualTo(2, "the training loop and the checkpoint code");
        Pages().Should().Contain(["docs/getting-started.md", "docs/how-to/choose-ratios.md", "docs/how-to/deploy-on-the-runtime.md",
            "docs/how-to/prune-by-channels.md", "docs/how-to/one-shot-pruning.md", "docs/how-to/export-to-onnx.md",
            "src/Pruning/README.md", "src/Pruning.Sparse/README.md"]);
    }

    [Theory]
    [MemberData(nameof(Snippets))]
    public void A_snippet_compiles_as_printed(string page, int index)
    {
        string code = Extract(Path.Combine(Root, page))[index];
        var tree = CSharpSyntaxTree.ParseText(code, new CSharpParseOptions(LanguageVersion.Latest));
        bool program = tree.GetCompilationUnitRoot().Members.OfType<GlobalStatementSyntax>().Any();
        var compilation = CSharpCompilation.Create($"Snippet{index}", [tree, ImplicitUsings], References.Value,
            new CSharpCompilationOptions(program ? OutputKind.ConsoleApplication : OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
        var errors = compilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error).Select(d => d.ToString()).ToList();
        errors.Should().BeEmpty($"snippet {index} of {page} must compile as printed:\n{code}");
    }

    /// <summary>The global usings of a new console app (the SDK's ImplicitUsings), which a reader pastes the snippet into.</summary>
    private static readonly SyntaxTree ImplicitUsings = CSharpSyntaxTree.ParseText(
        "global using System; global using System.Collections.Generic; global using System.IO; global using System.Linq; " +
        "global using System.Net.Http; global using System.Threading; global using System.Threading.Tasks;",
        new CSharpParseOptions(LanguageVersion.Latest));

    /// <summary>Every markdown page a reader gets (the README, docs/ and its folders, each package's README) that holds a C# block.</summary>
    private static IEnumerable<string> Pages() =>
        MarkdownPages.All(Root).Where(f => Extract(Path.Combine(Root, f)).Count > 0);

    private static List<string> Extract(string path) =>
        Regex.Matches(File.ReadAllText(path), @"^```csharp\r?\n(.*?)^```", RegexOptions.Singleline | RegexOptions.Multiline)
            .Select(m => m.Groups[1].Value).ToList();

    /// <summary>The runtime's assemblies and the ones next to this test (Pruning, Pruning.Sparse, TorchSharp, TorchVision, ONNX Runtime): what a console app referencing the packages sees.</summary>
    private static readonly Lazy<MetadataReference[]> References = new(() =>
    {
        var paths = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Concat(Directory.GetFiles(AppContext.BaseDirectory, "*.dll").Where(f => Path.GetFileName(f) is "Pruning.dll" or "Pruning.Sparse.dll" or "TorchSharp.dll" or "TorchVision.dll" or "Microsoft.ML.OnnxRuntime.dll"))
            .Where(File.Exists).DistinctBy(Path.GetFileName);
        return paths.Select(p => (MetadataReference)MetadataReference.CreateFromFile(p)).ToArray();
    });

    internal static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Pruning.sln"))) return dir.FullName;
        throw new InvalidOperationException("The repository root (with Pruning.sln) was not found above " + AppContext.BaseDirectory);
    }
}
