use super::*;
use proptest::prelude::*;

fn members(k: usize, zones: usize) -> Vec<Member> {
    (0..k)
        .map(|i| {
            let zone = (zones > 0).then(|| format!("z{}", i % zones));
            Member::new(format!("node-{i:02}"), zone.as_deref())
        })
        .collect()
}

/// Every preference list holds `min(n, nodes)` distinct nodes, primary first.
fn check_preference_lists(ring: &Ring, n: usize) {
    let k = ring.node_set().len();
    for p in 0..ring.ring_size() {
        let list = ring.preference_list(p, n);
        assert_eq!(list.len(), n.min(k), "partition {p}");
        assert_eq!(&list[0], ring.owner(p));
        let mut sorted = list.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), list.len(), "repeated node in list of {p}");
    }
}

#[test]
fn feasibility_condition() {
    // Q a multiple of k >= N.
    assert!(claim_feasible(64, 4, 3));
    assert!(claim_feasible(64, 8, 5));
    // k >= 2N is always enough when Q >= N.
    for q in [8u32, 16, 64, 1024] {
        for n in 1..=5 {
            for k in 2 * n..40 {
                assert!(claim_feasible(q, k, n), "q={q} k={k} n={n}");
            }
        }
    }
    // Fewer nodes than N, or a period that cannot wrap.
    assert!(!claim_feasible(64, 2, 3));
    assert!(!claim_feasible(8, 3, 3));
    assert!(!claim_feasible(64, 5, 5)); // ceil(64/5) = 13, 13 * 5 = 65 > 64
    assert!(claim_feasible(64, 5, 4));
}

#[test]
fn infeasible_windows_still_give_distinct_preference_lists() {
    let ms = members(3, 0);
    let ring = claim(8, &ms, 3, None);
    let q = assess(&ring, &ms, 3);
    assert!(q.max_owned - q.min_owned <= 1);
    assert!(q.node_violations > 0); // the pattern cannot wrap around 8 partitions
    assert!(q.node_violations <= 4, "{q:?}");
    check_preference_lists(&ring, 3);
}

#[test]
fn default_ring_five_nodes() {
    let ms = members(5, 0);
    let ring = claim(64, &ms, 3, None);
    let q = assess(&ring, &ms, 3);
    assert_eq!((q.min_owned, q.max_owned, q.node_violations), (12, 13, 0));
    for m in &ms {
        assert!(ring.replicated_partitions(&m.id, 3).len() >= 36);
    }
}

#[test]
fn zones_spread_when_they_allow() {
    // Equal zones and Q a multiple of the node count: every window spans min(N, zones).
    for (k, z, n) in [
        (8usize, 4usize, 3usize),
        (4, 2, 3),
        (8, 2, 2),
        (16, 4, 4),
        (4, 4, 3),
    ] {
        let ms = members(k, z);
        let ring = claim(64, &ms, n, None);
        let q = assess(&ring, &ms, n);
        assert_eq!(
            (q.node_violations, q.zone_violations),
            (0, 0),
            "k={k} z={z} n={n}"
        );
        assert_eq!(q.short_zone_lists, 0);
    }
    // Three zones cannot alternate round 64 partitions; at least two windows repeat a zone
    // and the claim gets there.
    let ms = members(6, 3);
    let ring = claim(64, &ms, 3, None);
    let q = assess(&ring, &ms, 3);
    assert_eq!(q.node_violations, 0);
    assert!(q.short_zone_lists <= 2, "{q:?}");
    // With plain node ids (no zones) the same set is a plain balanced ring.
    let q = assess(&ring, &members(6, 0), 3);
    assert_eq!(q.zone_violations, 0);
}

#[test]
fn members_absent_own_nothing() {
    let ms = members(6, 0);
    let before = claim(64, &ms, 3, None);
    let remaining: Vec<Member> = ms
        .iter()
        .filter(|m| m.id.as_str() != "node-02")
        .cloned()
        .collect();
    let after = claim(64, &remaining, 3, Some(&before));
    assert!(after.partitions_of(&NodeId::from("node-02")).is_empty());
    assert_eq!(after.nodes().len(), 5);
    assert_eq!(assess(&after, &remaining, 3).node_violations, 0);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    assert_eq!(try_claim(64, &[], 3, None), Err(RingError::NoMembers));
    assert!(matches!(
        try_claim(65, &members(2, 0), 3, None),
        Err(RingError::InvalidRingSize { .. })
    ));
    let prev = claim(16, &members(2, 0), 2, None);
    assert_eq!(claim(16, &[], 2, Some(&prev)), prev);
    assert_eq!(claim(16, &[], 2, None).ring_size(), 16);
    // target_n of 0 is treated as 1; huge n is clamped.
    let ring = claim(16, &members(3, 0), 0, None);
    assert_eq!(assess(&ring, &members(3, 0), 1).max_owned, 6);
    let ring = claim(16, &members(3, 0), 1000, None);
    check_preference_lists(&ring, 1000);
    // A one-partition ring works too.
    let ring = claim(1, &members(3, 0), 3, None);
    assert_eq!(ring.preference_list(0, 3).len(), 1);
}

#[test]
fn previous_of_another_size_is_ignored() {
    let prev = claim(32, &members(4, 0), 3, None);
    let ring = claim(64, &members(4, 0), 3, Some(&prev));
    assert_eq!(ring, claim(64, &members(4, 0), 3, None));
}

#[test]
fn large_ring_claims_quickly() {
    let ms = members(20, 4);
    let started = std::time::Instant::now();
    let before = claim(1 << 16, &ms[..19], 3, None);
    let after = claim(1 << 16, &ms, 3, Some(&before));
    let q = assess(&after, &ms, 3);
    assert!(q.max_owned - q.min_owned <= 1);
    assert_eq!(q.node_violations, 0);
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

/// The join slack: a joiner takes `ceil(Q/(k+1))` partitions; `2N` covers repairs.
fn join_bound(q: usize, k: usize, n: usize) -> usize {
    q.div_ceil(k + 1) + 2 * n
}

/// The leave slack. The leaver's partitions sit next to at most `2(N-1)` other nodes in the
/// stripe; those cannot take them without breaking a window, so each partition they gain is
/// a chained move (they take a partition elsewhere whose owner takes a freed one). Each node
/// gains at most `g = ceil(Q/k) - floor(Q/(k+1))`; the greedy may pay that chain twice.
fn leave_bound(q: usize, k: usize, n: usize, lost: usize) -> usize {
    let g = q.div_ceil(k) - q / (k + 1);
    lost + 4 * (n - 1) * g + 2 * n
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn claim_properties(k in 1usize..=32, qexp in 3u32..=10, n in 1usize..=5, seed in any::<u64>()) {
        let q = 1u32 << qexp;
        let all = members(k + 1, 0);
        let ms = &all[..k];
        let ring = claim(q, ms, n, None);
        let quality = assess(&ring, ms, n);
        prop_assert!(quality.max_owned - quality.min_owned <= 1, "{quality:?}");
        if claim_feasible(q, k, n) {
            prop_assert_eq!(quality.node_violations, 0);
        }
        check_preference_lists(&ring, n);

        // Determinism: shuffled and duplicated input gives the same ring.
        let mut shuffled = ms.to_vec();
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        shuffled.push(ms[0].clone());
        prop_assert_eq!(&claim(q, &shuffled, n, None), &ring);

        // Join: one more node takes about its share and nothing else moves.
        let joined = claim(q, &all, n, Some(&ring));
        let jq = assess(&joined, &all, n);
        prop_assert!(jq.max_owned - jq.min_owned <= 1);
        check_preference_lists(&joined, n);
        let moved = joined.moved_partitions(&ring).len();
        if claim_feasible(q, k, n) && claim_feasible(q, k + 1, n) {
            prop_assert_eq!(jq.node_violations, 0);
            prop_assert!(moved <= join_bound(q as usize, k, n), "join moved {} of {}", moved, q);
        }
        prop_assert_eq!(
            joined.partitions_of(&all[k].id).len(),
            moved.min(joined.partitions_of(&all[k].id).len())
        );

        // Leave: from k+1 nodes back to k; the leaver owns nothing afterwards.
        let left = claim(q, ms, n, Some(&joined));
        let lost = joined.partitions_of(&all[k].id).len();
        prop_assert!(left.partitions_of(&all[k].id).is_empty());
        let lq = assess(&left, ms, n);
        prop_assert!(lq.max_owned - lq.min_owned <= 1);
        check_preference_lists(&left, n);
        let moved = left.moved_partitions(&joined).len();
        prop_assert!(moved >= lost);
        if claim_feasible(q, k, n) {
            prop_assert_eq!(lq.node_violations, 0);
            if k > 2 * n {
                prop_assert!(moved <= leave_bound(q as usize, k, n, lost),
                    "leave moved {} (lost {}) q={} k={} n={}", moved, lost, q, k, n);
            }
        }
    }

    #[test]
    fn zone_spread_with_equal_zones(zexp in 0u32..=2, per_zone_exp in 0u32..=3, qexp in 3u32..=10, n in 1usize..=5) {
        // k = zones * per_zone, a power of two, so it divides Q.
        let (zones, per_zone) = (1usize << zexp, 1usize << per_zone_exp);
        let k = zones * per_zone;
        let q = 1u32 << qexp;
        prop_assume!(k <= q as usize && claim_feasible(q, k, n));
        let ms = members(k, zones);
        let ring = claim(q, &ms, n, None);
        let quality = assess(&ring, &ms, n);
        prop_assert_eq!(quality.node_violations, 0);
        prop_assert_eq!(quality.zone_violations, 0, "{:?}", quality);
        prop_assert_eq!(quality.short_zone_lists, 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any member leaving a small cluster (at most `2N` remain), after a join: the leave
    /// never adds violations, keeps balance, and meets [`small_leave_bound`].
    #[test]
    fn leave_from_a_small_cluster(n in 2usize..=4, rest in 2usize..=8, qexp in 4u32..=8, who in 0usize..9) {
        let q = 1u32 << qexp;
        prop_assume!(rest >= n && rest <= 2 * n && claim_feasible(q, rest, n));
        let all = members(rest + 1, 0);
        let grown = claim(q, &all, n, Some(&claim(q, &all[..rest], n, None)));
        let leaver = &all[who % all.len()];
        let remaining: Vec<Member> = all.iter().filter(|m| m.id != leaver.id).cloned().collect();
        let before = assess(&grown, &all, n);
        let after = claim(q, &remaining, n, Some(&grown));
        let quality = assess(&after, &remaining, n);
        prop_assert!(quality.max_owned - quality.min_owned <= 1, "{quality:?}");
        prop_assert!(quality.node_violations <= before.node_violations, "{quality:?}");
        prop_assert!(after.partitions_of(&leaver.id).is_empty());
        let lost = grown.partitions_of(&leaver.id).len();
        let low = fewest_moves(&grown, &remaining, n);
        let moved = after.moved_partitions(&grown).len();
        prop_assert!(moved >= lost.max(low));
        prop_assert!(small_leave_bound(moved, lost, low), "moved {moved}, lost {lost}, floor {low}");
    }
}

/// Violation cost as the claim weighs it: a repeated owner outweighs any repeated zone.
fn cost_of(q: &RingQuality) -> u64 {
    q.node_violations as u64 * NODE_WEIGHT + q.zone_violations as u64
}

/// A membership change from `before` to `members`: balanced, no more violations than a fresh
/// claim for `members` reaches, and at most `bound(moved)` true. Returns the failure.
fn check_change(
    q: u32,
    members: &[Member],
    n: usize,
    before: &Ring,
    what: &str,
    bound: impl Fn(usize) -> bool,
) -> Option<String> {
    let after = claim(q, members, n, Some(before));
    let quality = assess(&after, members, n);
    let fresh = assess(&claim(q, members, n, None), members, n);
    let moved = after.moved_partitions(before).len();
    let good = cost_of(&quality) <= cost_of(&fresh) && quality.max_owned - quality.min_owned <= 1;
    (!good || !bound(moved)).then(|| {
        format!(
            "{what} q={q} n={n} to {} members: moved {moved}, violations {} vs fresh {}",
            members.len(),
            quality.node_violations,
            fresh.node_violations
        )
    })
}

/// A lower bound on the partitions any change from `before` to `members` must move when
/// every window of `n` consecutive partitions ends with `n` distinct owners: the fewest
/// owners to change in a line of the partitions `0..Q` whose windows are all distinct,
/// balance ignored. Dropping the windows across the seam and balance only removes
/// constraints, so no ring meeting the window rule moves fewer. Exhaustive over the last
/// `n-1` owners; members beyond 8 or `n` beyond 4 are not needed here.
fn fewest_moves(before: &Ring, members: &[Member], n: usize) -> usize {
    let k = members.len();
    assert!((2..=4).contains(&n) && (n..=8).contains(&k));
    let ids: Vec<&NodeId> = members.iter().map(|m| &m.id).collect();
    let old: Vec<Option<usize>> = (0..before.ring_size())
        .map(|p| ids.iter().position(|id| *id == before.owner(p)))
        .collect();
    let states = k.pow(n as u32 - 1);
    let digits = |s: usize| -> Vec<usize> { (0..n - 1).map(|d| s / k.pow(d as u32) % k).collect() };
    let distinct = |d: &[usize]| d.iter().enumerate().all(|(i, a)| !d[..i].contains(a));
    let change = |p: usize, o: usize| usize::from(old[p] != Some(o));
    // cost[s]: fewest changes for the partitions so far, ending with the owners of `s`
    // (digit 0 the most recent).
    let mut cost: Vec<usize> = (0..states)
        .map(|s| {
            let d = digits(s);
            if distinct(&d) {
                d.iter().rev().enumerate().map(|(p, &o)| change(p, o)).sum()
            } else {
                usize::MAX
            }
        })
        .collect();
    for p in n - 1..old.len() {
        let mut next = vec![usize::MAX; states];
        for (s, &c) in cost.iter().enumerate() {
            if c == usize::MAX {
                continue;
            }
            let d = digits(s);
            for o in (0..k).filter(|o| !d.contains(o)) {
                let t = (s * k + o) % states;
                next[t] = next[t].min(c + change(p, o));
            }
        }
        cost = next;
    }
    cost.into_iter().min().unwrap_or(usize::MAX)
}

/// At most 1.5x the fair share `ideal`.
fn fair(moved: usize, ideal: usize) -> bool {
    moved * 2 <= ideal * 3
}

/// What a leave to at most `2N` members may move: 1.5x what the leaver owned, or, where the
/// proven floor [`fewest_moves`] (`low`) is higher than that, 2.1x the floor. The floor
/// ignores balance, which costs moves of its own: on a 4-member stripe of 32 partitions, a
/// leave to 3 with N=2 has a floor of 8 but needs 13 once balanced (exhaustive search).
fn small_leave_bound(moved: usize, lost: usize, low: usize) -> bool {
    fair(moved, lost) || moved * 10 <= low * 21
}

/// Joins and leaves on small clusters never end worse than a fresh claim, and move at most
/// 1.5x their fair share (a join: `Q/(k+1)`; a leave: what the leaver owned), except:
/// - a join to exactly `N >= 3` members: every window must then hold every member, which
///   forces a stripe of period `N`; the old ring (period `N-1`) agrees with it on at most
///   `Q/N` partitions, so at least `Q(N-1)/N` move, and the claim stays at that bound;
/// - a leave to at most `2N` members, where the leaver's neighbours on the ring hold every
///   remaining member: no one can take a partition of the leaver without another changing
///   owner, so 1.5x can be impossible (5 to 4 members with N=3 must move twice what the
///   leaver owned, see [`five_to_four_with_three_replicas_moves_twice_the_share`]). There
///   the claim stays within [`small_leave_bound`] of the proven floor;
/// - a leave to a ring that cannot keep every window distinct (`claim_feasible` fails, e.g.
///   3 members with N=3 on a power-of-two ring): only the quality is checked.
///
/// One test per replica count, so the test harness runs them side by side.
fn membership_change_moves_its_fair_share(n: usize) {
    let mut failures = Vec::new();
    for qexp in 4u32..=10 {
        let q = 1u32 << qexp;
        for k in 1usize..=7 {
            let all = members(k + 1, 0);
            let start = claim(q, &all[..k], n, None);
            let ideal = q as usize / (k + 1);
            let rephase = k + 1 == n && n >= 3;
            failures.extend(check_change(q, &all, n, &start, "join", |moved| {
                if rephase {
                    moved * n <= q as usize * (n - 1)
                } else {
                    fair(moved, ideal)
                }
            }));
            if k >= 2 {
                let rest = &all[..k - 1];
                let lost = start.partitions_of(&all[k - 1].id).len();
                let small = k - 1 <= 2 * n && claim_feasible(q, k - 1, n);
                let low = if small {
                    fewest_moves(&start, rest, n)
                } else {
                    0
                };
                let keeps_windows = claim_feasible(q, k - 1, n);
                failures.extend(check_change(q, rest, n, &start, "leave", |moved| {
                    moved >= lost
                        && moved >= low
                        && (!keeps_windows || small_leave_bound(moved, lost, low))
                }));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn membership_change_moves_its_fair_share_with_two_replicas() {
    membership_change_moves_its_fair_share(2);
}

#[test]
fn membership_change_moves_its_fair_share_with_three_replicas() {
    membership_change_moves_its_fair_share(3);
}

#[test]
fn membership_change_moves_its_fair_share_with_four_replicas() {
    membership_change_moves_its_fair_share(4);
}

/// The change operators make most, 5 nodes to 4 with N=3, cannot move 1.5x what the leaver
/// owned: in the 5-member stripe every partition of the leaver has the other four members
/// within two places, so each needs a second owner changed nearby, and those places do not
/// overlap between its partitions. The floor is twice the share; the claim stays within
/// 1.5x of the floor.
#[test]
fn five_to_four_with_three_replicas_moves_twice_the_share() {
    let all = members(5, 0);
    let before = claim(64, &all, 3, None);
    let lost = before.partitions_of(&all[4].id).len();
    let low = fewest_moves(&before, &all[..4], 3);
    assert_eq!(low, 2 * lost);
    let after = claim(64, &all[..4], 3, Some(&before));
    let quality = assess(&after, &all[..4], 3);
    assert_eq!((quality.min_owned, quality.max_owned), (16, 16));
    assert_eq!(quality.node_violations, 0);
    let moved = after.moved_partitions(&before).len();
    assert!(
        moved >= low && moved * 2 <= low * 3,
        "moved {moved}, floor {low}"
    );
}

/// The cluster growth the load test runs: 3 nodes to 4 on 32 partitions with N=3. The
/// 3-node ring must break windows (32 is not a multiple of 3); the join still moves about
/// its share instead of reshuffling the ring.
#[test]
fn join_from_a_ring_with_violations_moves_its_share() {
    let all = members(4, 0);
    let before = claim(32, &all[..3], 3, None);
    assert!(assess(&before, &all[..3], 3).node_violations > 0);
    let after = claim(32, &all, 3, Some(&before));
    let quality = assess(&after, &all, 3);
    assert_eq!((quality.min_owned, quality.max_owned), (8, 8));
    assert_eq!(quality.node_violations, 0);
    let moved = after.moved_partitions(&before).len();
    assert!(moved <= 12, "moved {moved} of 32");
}

/// The claimant asks the same claim every gossip round: only the first is computed, and a
/// change of membership is computed afresh.
#[test]
fn a_repeated_claim_is_answered_from_the_memo() {
    let computed = || COMPUTED.with(|c| c.get());
    let three: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|i| Member::new(*i, None))
        .collect();
    let ring = claim(64, &three, 3, None);
    let before = computed();
    let again = claim(64, &three, 3, Some(&ring));
    let steady = claim(64, &three, 3, Some(&ring));
    assert_eq!(
        computed() - before,
        1,
        "the second identical question was computed"
    );
    assert_eq!(steady.owners(), again.owners());
    let mut reversed = three.clone();
    reversed.reverse();
    claim(64, &reversed, 3, Some(&ring));
    assert_eq!(
        computed() - before,
        1,
        "member order does not change the question"
    );
    let mut four = three.clone();
    four.push(Member::new("d", None));
    let grown = claim(64, &four, 3, Some(&ring));
    assert_eq!(computed() - before, 2);
    assert_eq!(
        grown.owners(),
        compute_claim(64, &normalise(&four), 3, Some(&ring))
            .unwrap()
            .owners()
    );
}
