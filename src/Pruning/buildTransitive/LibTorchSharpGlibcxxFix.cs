// Compiled at build time by MSBuild's RoslynCodeTaskFactory (see Pruning.targets), and by the test project.
// Keep it to the netstandard2.0 surface: the task factory compiles against netstandard.
#nullable enable
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;

namespace Pruning.Build
{
    /// <summary>
    /// TorchSharp 0.107's libLibTorchSharp.so is linked against GCC 13's libstdc++ and asks for the symbol version
    /// GLIBCXX_3.4.32 for a single symbol it never calls. Debian 12 and Ubuntu 22.04 ship GCC 12's libstdc++, so the
    /// loader refuses the library. Marking that version need WEAK in the build output's copy makes the loader treat it
    /// as optional. The copy in the NuGet cache is never touched.
    /// </summary>
    public sealed class FixLibTorchSharpGlibcxx : Microsoft.Build.Utilities.Task
    {
        /// <summary>The libLibTorchSharp.so copies in a build or publish output.</summary>
        [Required]
        public ITaskItem[] Files { get; set; } = Array.Empty<ITaskItem>();

        /// <summary>The symbol version to weaken.</summary>
        public string Version { get; set; } = ElfVersionNeeds.TorchSharpGlibcxxVersion;

        /// <summary>"auto" patches only when the system libstdc++ lacks <see cref="Version"/>; "always" patches regardless.</summary>
        public string Mode { get; set; } = "auto";

        /// <summary>Overrides the libstdc++ that "auto" inspects (tests use it).</summary>
        public string? SystemLibStdCxx { get; set; }

        /// <inheritdoc />
        public override bool Execute()
        {
            if (Mode != "auto" && Mode != "always")
            {
                Log.LogError("PruningFixLibTorchSharp must be 'auto', 'always' or 'false', not '{0}'.", Mode);
                return false;
            }

            if (Mode == "auto")
            {
                string? system = SystemLibStdCxx ?? ElfVersionNeeds.FindSystemLibStdCxx();
                if (system != null && ElfVersionNeeds.FileDefinesVersion(system, Version))
                {
                    Log.LogMessage(MessageImportance.Low, "{0} provides {1}; libLibTorchSharp.so left as it is.", system, Version);
                    return true;
                }
            }

            foreach (ITaskItem item in Files)
            {
                string path = item.ItemSpec;
                try
                {
                    if (ElfVersionNeeds.MarkWeakInFile(path, Version))
                        Log.LogMessage(MessageImportance.Normal, "Marked {0} weak in {1} (the system libstdc++ lacks it).", Version, path);
                }
                catch (Exception e) when (e is InvalidDataException || e is IOException || e is UnauthorizedAccessException)
                {
                    Log.LogError("Could not patch '{0}' for {1}: {2}", path, Version, e.Message);
                }
            }

            return !Log.HasLoggedErrors;
        }
    }

    /// <summary>Reads and edits the version needs (<c>.gnu.version_r</c>) of a little-endian ELF64 shared object.</summary>
    public static class ElfVersionNeeds
    {
        /// <summary>The only version that TorchSharp 0.107's native glue needs beyond GCC 12's libstdc++.</summary>
        public const string TorchSharpGlibcxxVersion = "GLIBCXX_3.4.32";

        /// <summary>VER_FLG_WEAK: the loader does not fail when the version is missing.</summary>
        public const ushort WeakFlag = 0x2;

        private const uint ShtGnuVerneed = 0x6ffffffe;

        /// <summary>One <c>Elf64_Vernaux</c> entry: the library it is needed from, the version name and its flags.</summary>
        public struct Need
        {
            /// <summary>The needed library (e.g. libstdc++.so.6).</summary>
            public string File;
            /// <summary>The version name (e.g. GLIBCXX_3.4.32).</summary>
            public string Version;
            /// <summary>vna_flags.</summary>
            public ushort Flags;
            /// <summary>File offset of vna_flags.</summary>
            public int FlagsOffset;
        }

        /// <summary>Lists every version need of the ELF image.</summary>
        /// <exception cref="InvalidDataException">The image is not a well-formed little-endian ELF64 file.</exception>
        public static List<Need> Read(byte[] elf)
        {
            if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
                throw new InvalidDataException("not an ELF file");
            if (elf[4] != 2 || elf[5] != 1)
                throw new InvalidDataException("not a little-endian ELF64 file");

            long shoff = (long)U64(elf, 0x28);
            int shentsize = U16(elf, 0x3A);
            int shnum = U16(elf, 0x3C);
            if (shentsize < 64 || shoff <= 0 || shoff + (long)shentsize * shnum > elf.Length)
                throw new InvalidDataException("section header table lies outside the file");

            var needs = new List<Need>();
            for (int i = 0; i < shnum; i++)
            {
                int sh = checked((int)(shoff + (long)i * shentsize));
                if (U32(elf, sh + 4) != ShtGnuVerneed)
                    continue;

                long offset = (long)U64(elf, sh + 0x18);
                long size = (long)U64(elf, sh + 0x20);
                int link = (int)U32(elf, sh + 0x28);
                int count = (int)U32(elf, sh + 0x2C);
                if (offset < 0 || offset + size > elf.Length || link >= shnum)
                    throw new InvalidDataException("version-needs section lies outside the file");
                int strtabHeader = checked((int)(shoff + (long)link * shentsize));
                long strtab = (long)U64(elf, strtabHeader + 0x18);
                long strtabSize = (long)U64(elf, strtabHeader + 0x20);
                if (strtab < 0 || strtab + strtabSize > elf.Length)
                    throw new InvalidDataException("string table lies outside the file");

                long vn = offset;
                for (int n = 0; n < count; n++)
                {
                    Check(vn, 16, offset, size);
                    int auxCount = U16(elf, (int)vn + 2);
                    string file = CString(elf, strtab, strtabSize, U32(elf, (int)vn + 4));
                    long aux = vn + U32(elf, (int)vn + 8);
                    for (int a = 0; a < auxCount; a++)
                    {
                        Check(aux, 16, offset, size);
                        needs.Add(new Need
                        {
                            File = file,
                            Version = CString(elf, strtab, strtabSize, U32(elf, (int)aux + 8)),
                            Flags = U16(elf, (int)aux + 4),
                            FlagsOffset = (int)aux + 4,
                        });
                        uint nextAux = U32(elf, (int)aux + 12);
                        if (nextAux == 0) break;
                        aux += nextAux;
                    }
                    uint next = U32(elf, (int)vn + 12);
                    if (next == 0) break;
                    vn += next;
                }
            }
            return needs;
        }

        /// <summary>Sets the WEAK flag on every need of <paramref name="version"/>; returns whether a byte changed.</summary>
        public static bool MarkWeak(byte[] elf, string version)
        {
            bool changed = false;
            foreach (Need need in Read(elf))
            {
                if (need.Version != version || (need.Flags & WeakFlag) != 0)
                    continue;
                ushort flags = (ushort)(need.Flags | WeakFlag);
                elf[need.FlagsOffset] = (byte)flags;
                elf[need.FlagsOffset + 1] = (byte)(flags >> 8);
                changed = true;
            }
            return changed;
        }

        /// <summary>
        /// Patches the file in place when needed. The new content is written beside it and moved over it, so a
        /// hard link into the NuGet cache is replaced rather than edited; the timestamp is kept so that incremental
        /// builds do not copy the original back over it.
        /// </summary>
        public static bool MarkWeakInFile(string path, string version)
        {
            byte[] bytes = System.IO.File.ReadAllBytes(path);
            if (!MarkWeak(bytes, version))
                return false;
            DateTime stamp = System.IO.File.GetLastWriteTimeUtc(path);
            string temp = path + ".pruning-tmp";
            System.IO.File.WriteAllBytes(temp, bytes);
            System.IO.File.SetLastWriteTimeUtc(temp, stamp);
            System.IO.File.Delete(path);
            System.IO.File.Move(temp, path);
            return true;
        }

        /// <summary>Whether a libstdc++ defines the version (its name appears among its version definitions).</summary>
        public static bool FileDefinesVersion(string path, string version)
        {
            byte[] bytes = System.IO.File.ReadAllBytes(path);
            byte[] needle = Encoding.ASCII.GetBytes(version + "\0");
            for (int i = 0; i + needle.Length <= bytes.Length; i++)
            {
                int j = 0;
                while (j < needle.Length && bytes[i + j] == needle[j]) j++;
                if (j == needle.Length && (i == 0 || bytes[i - 1] == 0))
                    return true;
            }
            return false;
        }

        /// <summary>The libstdc++.so.6 the dynamic loader would most likely pick, or null when none is found.</summary>
        public static string? FindSystemLibStdCxx()
        {
            var dirs = new List<string>();
            string? ldPath = Environment.GetEnvironmentVariable("LD_LIBRARY_PATH");
            if (!string.IsNullOrEmpty(ldPath))
                dirs.AddRange(ldPath!.Split(':'));
            dirs.AddRange(new[]
            {
                "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                "/lib/aarch64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib",
            });
            foreach (string dir in dirs)
            {
                if (dir.Length == 0) continue;
                string candidate = Path.Combine(dir, "libstdc++.so.6");
                if (System.IO.File.Exists(candidate))
                    return candidate;
            }
            return null;
        }

        private static void Check(long at, int length, long sectionOffset, long sectionSize)
        {
            if (at < sectionOffset || at + length > sectionOffset + sectionSize)
                throw new InvalidDataException("version-needs entry lies outside its section");
        }

        private static string CString(byte[] elf, long strtab, long strtabSize, uint offset)
        {
            if (offset >= strtabSize)
                throw new InvalidDataException("string offset lies outside the string table");
            int start = (int)(strtab + offset);
            int end = start;
            int limit = (int)(strtab + strtabSize);
            while (end < limit && elf[end] != 0) end++;
            return Encoding.ASCII.GetString(elf, start, end - start);
        }

        private static ushort U16(byte[] b, int at) => (ushort)(b[at] | b[at + 1] << 8);

        private static uint U32(byte[] b, int at) => (uint)(b[at] | b[at + 1] << 8 | b[at + 2] << 16 | b[at + 3] << 24);

        private static ulong U64(byte[] b, int at) => U32(b, at) | (ulong)U32(b, at + 4) << 32;
    }
}
