using System.Text.RegularExpressions;

namespace Docs.Tests;

/// <summary>The markdown pages a reader gets, repository-relative with '/' separators.</summary>
internal static class MarkdownPages
{
    public static IEnumerable<string> All(string root) =>
        new[] { "README.md" }
            .Concat(Directory.GetFiles(Path.Combine(root, "docs"), "*.md", SearchOption.AllDirectories))
            .Concat(Directory.GetFiles(Path.Combine(root, "src"), "README.md", SearchOption.AllDirectories))
            .Select(f => Path.GetRelativePath(root, Path.Combine(root, f)).Replace('\\', '/'))
            .Where(f => !f.Contains("/bin/", StringComparison.Ordinal) && !f.Contains("/obj/", StringComparison.Ordinal) && !f.StartsWith("docs/api-reference/api/", StringComparison.Ordinal))
            .Distinct().Order(StringComparer.Ordinal);
}

/// <summary>
/// Every relative link in the pages resolves: to a file that exists and, with an anchor, to a heading of that page
/// (GitHub's heading ids); every docs/ page the code, the samples and CI name in their messages exists.
/// </summary>
public class LinkTests
{
    private static readonly string Root = SnippetTests.FindRoot();

    public static TheoryData<string> Pages()
    {
        var data = new TheoryData<string>();
        foreach (string page in MarkdownPages.All(Root)) data.Add(page);
        return data;
    }

    [Theory]
    [MemberData(nameof(Pages))]
    public void Every_relative_link_of_a_page_resolves_to_a_file_and_heading(string page)
    {
        var broken = new List<string>();
        foreach (string target in Links(File.ReadAllText(Path.Combine(Root, page))))
        {
            if (Regex.IsMatch(target, "^[a-z]+:", RegexOptions.IgnoreCase)) continue;   // https:, mailto:
            string path = target.Split('#')[0], anchor = target.Contains('#') ? target[(target.IndexOf('#') + 1)..] : "";
            string file = path.Length == 0 ? Path.Combine(Root, page) : Path.GetFullPath(Path.Combine(Root, Path.GetDirectoryName(page)!, Uri.UnescapeDataString(path)));
            if (!File.Exists(file) && !Directory.Exists(file)) broken.Add($"{target}: no such file");
            else if (anchor.Length > 0 && file.EndsWith(".md", StringComparison.Ordinal) && !HeadingIds(File.ReadAllText(file)).Contains(anchor))
                broken.Add($"{target}: no heading '{anchor}' in {Path.GetRelativePath(Root, file)}");
        }
        broken.Should().BeEmpty($"every link of {page} must resolve");
    }

    [Fact]
    public void The_link_check_sees_a_broken_file_and_a_broken_anchor()
    {
        Links("see [a](x.md), [b](y.md#part), ![c](images/p.png) and [d](https://example.org/#z)").Should()
            .Equal("x.md", "y.md#part", "images/p.png", "https://example.org/#z");
        HeadingIds("# Top\n```bash\n# not a heading\n```\n## The `quick` mode: 2 × 3, fast!\n").Should()
            .BeEquivalentTo(["top", "the-quick-mode-2--3-fast"]);
    }

    [Fact]
    public void Every_docs_page_the_code_names_exists()
    {
        var files = new[] { "src", "samples", "tests" }
            .SelectMany(d => Directory.GetFiles(Path.Combine(Root, d), "*.cs", SearchOption.AllDirectories))
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .Append(Path.Combine(Root, ".ci", "run"));
        var missing = (from f in files
                       from Match m in Regex.Matches(File.ReadAllText(f), @"docs/[\w/.-]+?\.md")
                       where !File.Exists(Path.Combine(Root, m.Value))
                       select $"{Path.GetRelativePath(Root, f)} names {m.Value}").Distinct().ToList();
        missing.Should().BeEmpty();
    }

    /// <summary>The targets of markdown links and images, outside code blocks and code spans.</summary>
    internal static IEnumerable<string> Links(string markdown)
    {
        string prose = Regex.Replace(markdown, @"^```.*?^```", "", RegexOptions.Singleline | RegexOptions.Multiline);
        prose = Regex.Replace(prose, @"`[^`\n]*`", "");
        return Regex.Matches(prose, @"\]\(([^)\s]+)\)").Select(m => m.Groups[1].Value);
    }

    /// <summary>GitHub's ids for a page's headings: lower case, punctuation dropped, spaces as hyphens.</summary>
    internal static HashSet<string> HeadingIds(string markdown)
    {
        string prose = Regex.Replace(markdown, @"^```.*?^```", "", RegexOptions.Singleline | RegexOptions.Multiline);
        return Regex.Matches(prose, @"^#{1,6} +(.+?) *$", RegexOptions.Multiline)
            .Select(m => Regex.Replace(m.Groups[1].Value.ToLowerInvariant(), @"[^\w\- ]", "").Replace(' ', '-'))
            .ToHashSet();
    }
}
