using Pruning.Selection;

namespace Pruning.Tests.Selection;

public sealed class RadixSelectorTests
{
    /// <summary>Runs the selector and returns pruned flags (1 = pruned), the inverse of the keep-flags it writes.</summary>
    private static byte[][] Select(float[][] scores, long k, bool[][]? previousKeep = null)
    {
        var keep = scores.Select(s => new bool[s.Length]).ToArray();
        RadixSelector.Select(a => scores[a], k, keep, previousKeep?.Select(p => (ReadOnlyMemory<bool>)p).ToList());
        return keep.Select(flags => flags.Select(f => f ? (byte)0 : (byte)1).ToArray()).ToArray();
    }

    private static byte[] SelectOne(float[] scores, long k) => Select([scores], k)[0];

    private static long MaxSelectable(params float[][] scores) => scores.Sum(s => Math.Max(s.Length - 1, 0L));

    /// <summary>The plain reference: sort by (score, array, index), take the first k, sparing each array's last maximum.</summary>
    private static HashSet<(int, int)> Reference(float[][] scores, long k)
    {
        var protectedIdx = scores.Select(s =>
        {
            if (s.Length == 0) return -1;
            float max = s.Max();
            return Array.FindLastIndex(s, v => v == max); // −0 == +0, as in the selector
        }).ToArray();
        return scores.SelectMany((s, a) => s.Select((v, i) => (v: v + 0f, a, i)))
            .Where(e => e.i != protectedIdx[e.a])
            .OrderBy(e => e.v).ThenBy(e => e.a).ThenBy(e => e.i)
            .Take((int)k).Select(e => (e.a, e.i)).ToHashSet();
    }

    [Theory]
    [InlineData(1, 0.5)]
    [InlineData(7, 0.5)]
    [InlineData(7, 0.9)]
    [InlineData(255, 0.3)]
    [InlineData(256, 0.75)]
    [InlineData(257, 0.9)]
    [InlineData(257, 0.9999)]
    [InlineData(10_000, 0.8)]
    public void PrunesExactlyRoundOfTargetTimesN_AndKeepsAtLeastOne(int n, double sparsity)
    {
        var rng = new Random(20230828 + n);
        float[] scores = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray();
        long k = Math.Min(MaskSelector.PrunedCount(sparsity, n), MaxSelectable(scores));

        byte[] pruned = SelectOne(scores, k);

        long expected = Math.Min((long)Math.Round(sparsity * n, MidpointRounding.ToEven), n - 1);
        pruned.Sum(b => b).Should().Be((int)expected);
        pruned.Should().Contain(0, "at least one weight survives");
    }

    [Fact]
    public void ExtremeSparsity_LeavesExactlyTheLargestWeight()
    {
        float[] scores = [0.3f, 0.9f, 0.1f, 0.5f, 0.9f, 0.2f, 0.05f];
        byte[] pruned = SelectOne(scores, Math.Min(MaskSelector.PrunedCount(0.9999, 7), MaxSelectable(scores)));
        pruned.Should().Equal(1, 1, 1, 1, 0, 1, 1);
    }

    [Fact]
    public void Ties_ArePrunedInIndexOrder()
    {
        SelectOne([1f, 1f, 1f, 1f, 1f], 2).Should().Equal(1, 1, 0, 0, 0);
        SelectOne([2f, 1f, 1f, 0f, 1f], 3).Should().Equal(0, 1, 1, 1, 0);
    }

    [Fact]
    public void Ties_PreferWhatIsAlreadyPruned_SoTiesNeverChurn()
    {
        byte[] pruned = Select([[1, 1, 1, 1, 1, 1]], 3, [[true, true, false, true, false, true]])[0];
        pruned.Should().Equal([1, 0, 1, 0, 1, 0], "the two already pruned go first, then the lowest index");

        // Scores still come first: index 0 (score 0) goes, then the tie at 5 prefers the already pruned index 3, then
        // index 1. Index 4 was pruned but holds the largest score, and at least one weight survives.
        pruned = Select([[0, 5, 5, 5, 9]], 3, [[true, true, true, false, false]])[0];
        pruned.Should().Equal(1, 1, 0, 1, 0);
    }

    [Fact]
    public void AllZeroTensor_StillKeepsOne()
    {
        SelectOne(new float[8], 7).Should().Equal(1, 1, 1, 1, 1, 1, 1, 0);
    }

    [Fact]
    public void NegativeScoresAndSignedZeros_AreOrderedAsNumbers()
    {
        SelectOne([-0f, -1f, 0f, 0.5f, -2f, float.Epsilon], 3).Should().Equal(1, 1, 0, 0, 1, 0);
    }

    [Theory]
    [InlineData(1, 300)]
    [InlineData(2, 300)]
    [InlineData(3, 300)]
    [InlineData(5, 300)]
    [InlineData(3, 400_000)] // large enough for the selector to split the work across threads
    public void Global_AgreesWithASortBasedReference(int arrays, int maxLength)
    {
        var rng = new Random(42 * arrays);
        for (int trial = 0; trial < (maxLength > 1000 ? 3 : 30); trial++)
        {
            // Few distinct values force many ties across arrays.
            float[][] scores = Enumerable.Range(0, arrays)
                .Select(_ => Enumerable.Range(0, rng.Next(1, maxLength)).Select(_ => rng.Next(-20, 20) / 4f * (rng.Next(2) == 0 ? 1 : -1)).ToArray()).ToArray();
            long k = rng.NextInt64(0, MaxSelectable(scores) + 1);

            byte[][] pruned = Select(scores, k);

            var actual = pruned.SelectMany((p, a) => p.Select((v, i) => (v, a, i))).Where(e => e.v == 1).Select(e => (e.a, e.i)).ToHashSet();
            actual.Order().Should().Equal(Reference(scores, k).Order(), $"trial {trial}, k = {k}");
        }
    }

    [Fact]
    public void Global_KeepsOneWeightInATensorWhoseWeightsAreAllTiny()
    {
        float[] tiny = [1e-6f, 2e-6f, 3e-6f];
        float[] large = [5f, 6f, 7f, 8f];
        byte[][] pruned = Select([tiny, large], 4);
        pruned[0].Should().Equal(1, 1, 0);
        pruned[1].Should().Equal(1, 1, 0, 0);
    }

    [Fact]
    public void AskingForMoreThanCanBePruned_Throws()
    {
        var act = () => SelectOne([1f, 2f, 3f], 3);
        act.Should().Throw<ArgumentOutOfRangeException>();
    }
}
