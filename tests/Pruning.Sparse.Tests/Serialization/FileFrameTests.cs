using Pruning.Sparse.Serialization;

namespace Pruning.Sparse.Tests.Serialization;

public class FileFrameTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("frame-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_write_that_fails_halfway_leaves_the_previous_file_and_no_temporary_file()
    {
        string path = Path.Combine(_dir, "model.bin");
        FileFrame.Save([1, 2, 3], path);
        FluentActions.Invoking(() => FileFrame.Save(path, stream =>
        {
            stream.Write(new byte[1000]);
            throw new IOException("disk full");
        })).Should().Throw<IOException>().WithMessage("disk full");
        File.ReadAllBytes(path).Should().Equal(1, 2, 3);
        Directory.GetFiles(_dir).Should().Equal(path);
    }

    [Fact]
    public void Frames_name_their_problem_through_the_callers_exception_and_keep_the_version_range()
    {
        byte[] magic = "TESTFRM1"u8.ToArray();
        byte[] v2 = FileFrame.Checksummed(magic, 2, w => w.Write(42));
        Exception Bad(string problem, long? offset) => new InvalidDataException($"Test file 'x' is invalid: {problem}.");

        FileFrame.Payload(v2, magic, 2, 3, 0, Bad, out uint version).Length.Should().Be(v2.Length - 4);
        version.Should().Be(2);
        FluentActions.Invoking(() => FileFrame.Payload(v2, magic, 3, 3, 0, Bad, out _)).Should().Throw<InvalidDataException>()
            .WithMessage("Test file 'x' is invalid: its format version is 2; this library reads version 3.");
        FluentActions.Invoking(() => FileFrame.Payload(v2, "OTHERFRM"u8, 1, 3, 0, Bad, out _)).Should().Throw<InvalidDataException>()
            .WithMessage("*does not start with \"OTHERFRM\"*");
        FluentActions.Invoking(() => FileFrame.Payload(v2[..^1], magic, 1, 3, 0, Bad, out _)).Should().Throw<InvalidDataException>()
            .WithMessage("*checksum does not match*");
        FluentActions.Invoking(() => FileFrame.Payload(v2[..15], magic, 1, 3, 0, Bad, out _)).Should().Throw<InvalidDataException>()
            .WithMessage("*15 bytes long, shorter than the smallest valid file (16 bytes)*");
    }

    [Fact]
    public void Reading_refuses_a_file_over_its_bound_before_reading_it_and_names_a_missing_one()
    {
        string path = Path.Combine(_dir, "huge.bin");
        using (var file = File.Create(path)) file.SetLength(1L << 32);
        long before = GC.GetAllocatedBytesForCurrentThread();
        FluentActions.Invoking(() => FileFrame.ReadFile(path, 1 << 20, "Test file", (p, _) => new InvalidDataException(p))).Should().Throw<InvalidDataException>()
            .WithMessage("it is 4294967296 bytes, more than the 1048576 such a file may have here");
        (GC.GetAllocatedBytesForCurrentThread() - before).Should().BeLessThan(1 << 20);
        FluentActions.Invoking(() => FileFrame.ReadFile(Path.Combine(_dir, "none", "x.bin"), 1, "Test file", (p, _) => new InvalidDataException(p)))
            .Should().Throw<FileNotFoundException>().WithMessage("Test file '*x.bin' does not exist.");
    }
}
