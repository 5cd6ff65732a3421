using Pruning.Build;
using TorchSharp;

namespace Pruning.Tests.BuildTransitive;

public sealed class LibTorchSharpGlibcxxFixTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pruning-elf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>TorchSharp's unpatched native glue, in the NuGet cache (read, never written).</summary>
    internal static string PristineLibrary()
    {
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string path = Path.Combine(root, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        File.Exists(path).Should().BeTrue($"the restore puts TorchSharp's native glue at {path}");
        return path;
    }

    [Fact]
    public void MarkWeak_OnTheShippedLibrary_FlipsOnlyTheGlibcxx3432Flag()
    {
        string copy = Path.Combine(_dir, "libLibTorchSharp.so");
        File.Copy(PristineLibrary(), copy);
        byte[] before = File.ReadAllBytes(copy);

        var needBefore = ElfVersionNeeds.Read(before).Single(n => n.Version == "GLIBCXX_3.4.32");
        needBefore.File.Should().Be("libstdc++.so.6");
        (needBefore.Flags & ElfVersionNeeds.WeakFlag).Should().Be(0);

        ElfVersionNeeds.MarkWeakInFile(copy, "GLIBCXX_3.4.32").Should().BeTrue();

        byte[] after = File.ReadAllBytes(copy);
        after.Length.Should().Be(before.Length);
        var changed = Enumerable.Range(0, before.Length).Where(i => before[i] != after[i]).ToArray();
        changed.Should().Equal(needBefore.FlagsOffset);
        var needsAfter = ElfVersionNeeds.Read(after);
        needsAfter.Single(n => n.Version == "GLIBCXX_3.4.32").Flags.Should().Be((ushort)(needBefore.Flags | 2));
        needsAfter.Where(n => n.Version != "GLIBCXX_3.4.32").Select(n => n.Flags)
            .Should().Equal(ElfVersionNeeds.Read(before).Where(n => n.Version != "GLIBCXX_3.4.32").Select(n => n.Flags));
    }

    [Fact]
    public void MarkWeakInFile_IsIdempotent_AndKeepsTheTimestamp()
    {
        string copy = Path.Combine(_dir, "libLibTorchSharp.so");
        File.Copy(PristineLibrary(), copy);
        var stamp = new DateTime(2024, 1, 2, 3, 4, 5, DateTimeKind.Utc);
        File.SetLastWriteTimeUtc(copy, stamp);

        ElfVersionNeeds.MarkWeakInFile(copy, "GLIBCXX_3.4.32").Should().BeTrue();
        byte[] once = File.ReadAllBytes(copy);
        ElfVersionNeeds.MarkWeakInFile(copy, "GLIBCXX_3.4.32").Should().BeFalse();

        File.ReadAllBytes(copy).Should().Equal(once);
        File.GetLastWriteTimeUtc(copy).Should().Be(stamp);
    }

    [Fact]
    public void MarkWeakInFile_ReplacesAHardLinkInsteadOfWritingThroughIt()
    {
        string original = Path.Combine(_dir, "cache.so");
        File.Copy(PristineLibrary(), original);
        byte[] pristine = File.ReadAllBytes(original);
        string link = Path.Combine(_dir, "libLibTorchSharp.so");
        File.CreateSymbolicLink(link, original);

        ElfVersionNeeds.MarkWeakInFile(link, "GLIBCXX_3.4.32").Should().BeTrue();

        File.ReadAllBytes(original).Should().Equal(pristine, "the cached original must never change");
        ElfVersionNeeds.Read(File.ReadAllBytes(link)).Single(n => n.Version == "GLIBCXX_3.4.32").Flags.Should().Be(2);
    }

    [Fact]
    public void Read_NotAnElfFile_SaysSo()
    {
        var act = () => ElfVersionNeeds.Read(new byte[128]);
        act.Should().Throw<InvalidDataException>().WithMessage("not an ELF file");
    }

    [Fact]
    public void Read_TruncatedLibrary_SaysWhatLiesOutside()
    {
        byte[] truncated = File.ReadAllBytes(PristineLibrary()).AsSpan(0, 4096).ToArray();
        var act = () => ElfVersionNeeds.Read(truncated);
        act.Should().Throw<InvalidDataException>().WithMessage("*outside the file*");
    }

    [Fact]
    public void FileDefinesVersion_FindsOnlyWholeVersionNames()
    {
        string lib = Path.Combine(_dir, "libstdc++.so.6");
        File.WriteAllBytes(lib, "\0GLIBCXX_3.4.30\0GLIBCXX_3.4.321\0"u8.ToArray());
        ElfVersionNeeds.FileDefinesVersion(lib, "GLIBCXX_3.4.30").Should().BeTrue();
        ElfVersionNeeds.FileDefinesVersion(lib, "GLIBCXX_3.4.32").Should().BeFalse();
        ElfVersionNeeds.FileDefinesVersion(lib, "GLIBCXX_3.4.3").Should().BeFalse();
    }

    [Fact]
    public void TheBuildOutputsCopy_IsPatched_AndTorchSharpLoads()
    {
        string outputCopy = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        string? system = ElfVersionNeeds.FindSystemLibStdCxx();
        bool systemHasIt = system is not null && ElfVersionNeeds.FileDefinesVersion(system, "GLIBCXX_3.4.32");
        var need = ElfVersionNeeds.Read(File.ReadAllBytes(outputCopy)).Single(n => n.Version == "GLIBCXX_3.4.32");
        ((need.Flags & 2) != 0).Should().Be(!systemHasIt, "the build patches only where the system libstdc++ lacks the version");

        using var t = torch.arange(4, dtype: torch.float32);
        t.sum().item<float>().Should().Be(6f);
    }
}
