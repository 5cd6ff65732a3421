using System.Collections;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;
using Pruning.Build;

namespace Pruning.Tests.BuildTransitive;

public sealed class FixTaskTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pruning-task-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private (FixLibTorchSharpGlibcxx Task, RecordingEngine Engine, string Library) NewTask(string systemLibrary)
    {
        string library = Path.Combine(_dir, "libLibTorchSharp.so");
        File.Copy(LibTorchSharpGlibcxxFixTests.PristineLibrary(), library);
        var engine = new RecordingEngine();
        var task = new FixLibTorchSharpGlibcxx { BuildEngine = engine, Files = [new TaskItem(library)], SystemLibStdCxx = systemLibrary };
        return (task, engine, library);
    }

    private string FakeLibStdCxx(string newestVersion)
    {
        string path = Path.Combine(_dir, "libstdc++.so.6");
        File.WriteAllBytes(path, System.Text.Encoding.ASCII.GetBytes($"\0GLIBCXX_3.4.29\0{newestVersion}\0"));
        return path;
    }

    private static ushort Flags(string library) =>
        ElfVersionNeeds.Read(File.ReadAllBytes(library)).Single(n => n.Version == "GLIBCXX_3.4.32").Flags;

    [Fact]
    public void Auto_OnAGcc12System_PatchesTheCopy()
    {
        var (task, _, library) = NewTask(FakeLibStdCxx("GLIBCXX_3.4.30"));
        task.Execute().Should().BeTrue();
        Flags(library).Should().Be(ElfVersionNeeds.WeakFlag);
    }

    [Fact]
    public void Auto_OnAGcc13System_LeavesTheCopyAlone()
    {
        var (task, _, library) = NewTask(FakeLibStdCxx("GLIBCXX_3.4.32"));
        task.Execute().Should().BeTrue();
        Flags(library).Should().Be(0);
    }

    [Fact]
    public void Always_PatchesEvenOnAGcc13System()
    {
        var (task, _, library) = NewTask(FakeLibStdCxx("GLIBCXX_3.4.32"));
        task.Mode = "always";
        task.Execute().Should().BeTrue();
        Flags(library).Should().Be(ElfVersionNeeds.WeakFlag);
    }

    [Fact]
    public void UnknownMode_FailsTheBuildWithAMessage()
    {
        var (task, engine, _) = NewTask(FakeLibStdCxx("GLIBCXX_3.4.30"));
        task.Mode = "sometimes";
        task.Execute().Should().BeFalse();
        engine.Errors.Should().ContainSingle().Which.Should().Contain("'sometimes'");
    }

    [Fact]
    public void ACorruptLibrary_FailsTheBuildNamingTheFile()
    {
        var (task, engine, library) = NewTask(FakeLibStdCxx("GLIBCXX_3.4.30"));
        File.WriteAllBytes(library, new byte[100]);
        task.Execute().Should().BeFalse();
        engine.Errors.Should().ContainSingle().Which.Should().Contain(library).And.Contain("not an ELF file");
    }

    private sealed class RecordingEngine : IBuildEngine
    {
        public List<string> Errors { get; } = [];
        public bool ContinueOnError => false;
        public int LineNumberOfTaskNode => 0;
        public int ColumnNumberOfTaskNode => 0;
        public string ProjectFileOfTaskNode => "test.proj";
        public bool BuildProjectFile(string projectFileName, string[] targetNames, IDictionary globalProperties, IDictionary targetOutputs) => true;
        public void LogCustomEvent(CustomBuildEventArgs e) { }
        public void LogErrorEvent(BuildErrorEventArgs e) => Errors.Add(e.Message ?? "");
        public void LogMessageEvent(BuildMessageEventArgs e) { }
        public void LogWarningEvent(BuildWarningEventArgs e) { }
    }
}
