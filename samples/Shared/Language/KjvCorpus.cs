using System.Diagnostics;
using System.Text;

namespace Pruning.Samples.Language;

/// <summary>
/// The King James Bible as a word-level language-modelling corpus, prepared the way Penn Treebank's LM data is:
/// lower case, words only (punctuation dropped), one &lt;eos&gt; after each verse, and a closed vocabulary of the most
/// frequent training words with &lt;unk&gt; for the rest.
/// </summary>
/// <remarks>
/// Split, by position: the 31,102 verses in canonical order are cut into blocks of <see cref="BlockVerses"/>;
/// block k goes to validation when k mod 20 = 18, to test when k mod 20 = 19, and to training otherwise. So
/// about 90 / 5 / 5 % of the text, spread over the whole Bible (law, history, poetry, prophets, gospels, letters),
/// while each held-out block is a contiguous passage the model has not seen.
/// </remarks>
public sealed class KjvCorpus
{
    /// <summary>Verses per block of the split.</summary>
    public const int BlockVerses = 100;

    /// <summary>The one command that installs the text on Debian/Ubuntu.</summary>
    public const string InstallHint = "sudo apt-get install bible-kjv";

    private KjvCorpus(IReadOnlyList<string[]> train, IReadOnlyList<string[]> valid, IReadOnlyList<string[]> test)
    {
        Train = train;
        Valid = valid;
        Test = test;
    }

    /// <summary>Training verses, as word lists.</summary>
    public IReadOnlyList<string[]> Train { get; }

    /// <summary>Validation verses.</summary>
    public IReadOnlyList<string[]> Valid { get; }

    /// <summary>Test verses.</summary>
    public IReadOnlyList<string[]> Test { get; }

    /// <summary>Runs <c>bible -f "Gen1:1-Rev22:21"</c> (Debian package bible-kjv) and parses its output.</summary>
    /// <exception cref="FileNotFoundException">The bible command is not installed; the message names the package.</exception>
    public static KjvCorpus LoadFromBibleCommand()
    {
        var start = new ProcessStartInfo("bible", ["-f", "Gen1:1-Rev22:21"]) { RedirectStandardOutput = true, UseShellExecute = false, StandardOutputEncoding = Encoding.UTF8 };
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new FileNotFoundException("Could not start 'bible'.");
        }
        catch (System.ComponentModel.Win32Exception)
        {
            throw new FileNotFoundException($"The 'bible' command is not installed. Install the text with: {InstallHint} (or pass --corpus FILE).");
        }
        string text = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidDataException($"'bible' exited with code {process.ExitCode}.");
        return Parse(text.Split('\n'));
    }

    /// <summary>Parses lines "Ref text" (e.g. "Ge1:1 In the beginning…"), one verse per line, and splits them.</summary>
    public static KjvCorpus Parse(IEnumerable<string> lines)
    {
        var verses = new List<string[]>();
        foreach (string raw in lines)
        {
            string line = raw.Trim();
            if (line.Length == 0) continue;
            int space = line.IndexOf(' ');
            if (space <= 0 || !line[..space].Contains(':'))
                throw new InvalidDataException($"Verse line {verses.Count + 1} does not start with a reference like 'Ge1:1': '{Shorten(line)}'.");
            verses.Add(Words(line[(space + 1)..]));
        }
        if (verses.Count == 0) throw new InvalidDataException("The corpus has no verses.");
        var train = new List<string[]>();
        var valid = new List<string[]>();
        var test = new List<string[]>();
        for (int i = 0; i < verses.Count; i++)
        {
            int block = i / BlockVerses;
            (block % 20 == 18 ? valid : block % 20 == 19 ? test : train).Add(verses[i]);
        }
        return new KjvCorpus(train, valid, test);
    }

    /// <summary>Lower-cased words: runs of letters, with inner apostrophes kept ("lord's"); everything else separates.</summary>
    public static string[] Words(string text)
    {
        var words = new List<string>();
        var current = new StringBuilder();
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            bool inner = c == '\'' && current.Length > 0 && i + 1 < text.Length && char.IsLetter(text[i + 1]);
            if (char.IsLetter(c) || inner) current.Append(char.ToLowerInvariant(c));
            else if (current.Length > 0) { words.Add(current.ToString()); current.Clear(); }
        }
        if (current.Length > 0) words.Add(current.ToString());
        return words.ToArray();
    }

    private static string Shorten(string s) => s.Length > 40 ? s[..40] + "…" : s;
}

/// <summary>A closed word vocabulary: index 0 is &lt;unk&gt;, 1 is &lt;eos&gt;, then words by falling training frequency (ties alphabetically).</summary>
public sealed class Vocabulary
{
    /// <summary>The unknown-word token.</summary>
    public const string Unknown = "<unk>";

    /// <summary>The end-of-verse token.</summary>
    public const string EndOfSentence = "<eos>";

    private readonly Dictionary<string, int> _index;

    private Vocabulary(string[] words)
    {
        Words = words;
        _index = words.Select((w, i) => (w, i)).ToDictionary(p => p.w, p => p.i);
    }

    /// <summary>The tokens, by index.</summary>
    public IReadOnlyList<string> Words { get; }

    /// <summary>Number of tokens, the two specials included.</summary>
    public int Count => Words.Count;

    /// <summary>Builds a vocabulary of at most <paramref name="size"/> tokens from the training verses.</summary>
    public static Vocabulary Build(IEnumerable<string[]> trainVerses, int size)
    {
        if (size < 3) throw new ArgumentOutOfRangeException(nameof(size), size, "A vocabulary needs room for <unk>, <eos> and one word.");
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string[] verse in trainVerses)
            foreach (string w in verse) counts[w] = counts.GetValueOrDefault(w) + 1;
        var words = counts.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal).Take(size - 2).Select(kv => kv.Key);
        return new Vocabulary([Unknown, EndOfSentence, .. words]);
    }

    /// <summary>The index of <paramref name="word"/>, or of &lt;unk&gt;.</summary>
    public int this[string word] => _index.TryGetValue(word, out int i) ? i : 0;

    /// <summary>The verses as one token stream, each verse followed by &lt;eos&gt;.</summary>
    public long[] Encode(IEnumerable<string[]> verses)
    {
        var tokens = new List<long>();
        foreach (string[] verse in verses)
        {
            foreach (string w in verse) tokens.Add(this[w]);
            tokens.Add(1);
        }
        return tokens.ToArray();
    }
}
