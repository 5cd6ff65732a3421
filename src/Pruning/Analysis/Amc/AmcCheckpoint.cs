using System.Text;
using Pruning.Sparse.Serialization;
using static TorchSharp.torch;

namespace Pruning.Analysis.Amc;

/// <summary>
/// An AMC search on disk: the options' fingerprint, the episode log, the generator, the reward baseline, the replay
/// buffer, and every tensor of the agent (networks, targets, Adam moments) with the Adam steps. Framed as every file of
/// the library (<see cref="FileFrame"/>: "PRNAMCCK", u32 version 2, body, CRC-32) and written atomically; read as
/// untrusted input: the size is bounded by what this search can hold, every count is checked before anything is
/// allocated. Version 1 (magic "PRNAMC01", earlier releases) is refused by name: a search restarts from scratch.
/// </summary>
internal static class AmcCheckpoint
{
    private static readonly byte[] Magic = "PRNAMCCK"u8.ToArray();
    private static readonly byte[] VersionOneMagic = "PRNAMC01"u8.ToArray();
    private const uint Version = 2;

    public static void Write(string path, string fingerprint, DdpgAgent agent, AmcSearch.SearchState search) =>
        FileFrame.Save(FileFrame.Checksummed(Magic, Version, w =>
        {
            w.Write(fingerprint);
            w.Write(search.Episodes.Count);
            foreach (AmcEpisode e in search.Episodes)
            {
                w.Write(e.Warmup);
                foreach (double r in e.Ratios) w.Write(r);
                w.Write(e.Resource);
                w.Write(e.Metric);
                w.Write(e.Reward);
            }
            foreach (ulong s in search.Random.State) w.Write(s);
            w.Write(search.Baseline);
            w.Write(search.Replay.Count);
            foreach (Transition t in search.Replay.InOrder())
            {
                foreach (float f in t.State) w.Write(f);
                w.Write(t.Action);
                w.Write(t.Reward);
                foreach (float f in t.Next) w.Write(f);
                w.Write(t.Done);
            }
            var (actorSteps, criticSteps) = agent.Steps;
            w.Write(actorSteps);
            w.Write(criticSteps);
            foreach (Tensor tensor in agent.StateTensors)
            {
                using var host = tensor.detach().cpu().contiguous();
                w.Write(host.bytes);
            }
        }), path);

    public static void Read(string path, string fingerprint, int layers, AmcOptions options, DdpgAgent agent, AmcSearch.SearchState search)
    {
        long tensorBytes = agent.StateTensors.Sum(t => t.numel() * 4);
        long transitionBytes = 2L * AmcEnvironment.StateSize * 4 + 4 + 4 + 1;
        long episodeBytes = 1 + 8L * layers + 24;
        long limit = 4096 + Encoding.UTF8.GetMaxByteCount(fingerprint.Length) + 4 + options.Episodes * episodeBytes + 40
            + 4 + options.ReplayCapacity * transitionBytes + 16 + tensorBytes;
        Exception Bad(string problem, long? offset) => new InvalidDataException($"AMC checkpoint '{path}' is invalid: {problem}.");
        byte[] all = FileFrame.ReadFile(path, limit + FileFrame.HeaderBytes + 4, "AMC checkpoint", Bad);
        if (all.AsSpan().StartsWith(VersionOneMagic))
            throw new InvalidDataException($"AMC checkpoint '{path}' has format version 1 (\"PRNAMC01\", an earlier release), which this library no longer reads; delete it to start the search again.");
        FileFrame.Payload(all, Magic, Version, Version, 0, Bad, out _);
        try
        {
            using var r = new BinaryReader(new MemoryStream(all, FileFrame.HeaderBytes, all.Length - FileFrame.HeaderBytes - 4, writable: false), Encoding.UTF8);
            string saved = r.ReadString();
            if (saved != fingerprint)
                throw new InvalidDataException($"AMC checkpoint '{path}' is of another search (other options, model or layers); remove it or change AmcOptions.CheckpointPath.");
            int episodes = r.ReadInt32();
            if (episodes < 0 || episodes > options.Episodes)
                throw new InvalidDataException($"AMC checkpoint '{path}' claims {episodes} episodes; the search has {options.Episodes}.");
            var log = new List<AmcEpisode>(episodes);
            for (int e = 0; e < episodes; e++)
            {
                bool warmup = r.ReadBoolean();
                var ratios = new double[layers];
                for (int t = 0; t < layers; t++) ratios[t] = r.ReadDouble();
                log.Add(new AmcEpisode(e, warmup, ratios, r.ReadDouble(), r.ReadDouble(), r.ReadDouble()));
            }
            ulong[] random = [r.ReadUInt64(), r.ReadUInt64(), r.ReadUInt64(), r.ReadUInt64()];
            double baseline = r.ReadDouble();
            int count = r.ReadInt32();
            if (count < 0 || count > options.ReplayCapacity)
                throw new InvalidDataException($"AMC checkpoint '{path}' claims {count} transitions; the buffer holds {options.ReplayCapacity}.");
            var transitions = new List<Transition>(count);
            for (int i = 0; i < count; i++)
            {
                float[] state = Floats(r, AmcEnvironment.StateSize);
                float action = r.ReadSingle(), reward = r.ReadSingle();
                transitions.Add(new Transition(state, action, reward, Floats(r, AmcEnvironment.StateSize), r.ReadBoolean()));
            }
            (long Actor, long Critic) steps = (r.ReadInt64(), r.ReadInt64());
            if (steps.Actor < 0 || steps.Critic < 0) throw new InvalidDataException($"AMC checkpoint '{path}' has negative Adam steps.");
            var values = agent.StateTensors.Select(t =>
            {
                byte[] bytes = r.ReadBytes((int)(t.numel() * 4));
                if (bytes.Length != t.numel() * 4) throw new EndOfStreamException();
                return bytes;
            }).ToList();
            if (r.BaseStream.Position != r.BaseStream.Length)
                throw new InvalidDataException($"AMC checkpoint '{path}' has trailing bytes.");

            // Everything read and checked: now install it.
            search.Episodes.AddRange(log);
            search.Random.State = random;
            search.Baseline = baseline;
            foreach (Transition t in transitions) search.Replay.Add(t);
            agent.Steps = steps;
            using var noGrad = TorchSharp.torch.no_grad();
            foreach (var (tensor, bytes) in agent.StateTensors.Zip(values))
            {
                using var host = TorchSharp.torch.empty(tensor.shape, ScalarType.Float32);
                bytes.CopyTo(host.bytes);
                tensor.copy_(host);
            }
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"AMC checkpoint '{path}' ends early.");
        }
    }

    private static float[] Floats(BinaryReader r, int count)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = r.ReadSingle();
        return values;
    }
}
