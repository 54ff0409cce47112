//! Catching up after a restart: while its peers still hold hints (writes it missed while it
//! was down), a restarted node answers reads from stale copies. So it is *catching up* until
//! every reachable peer reports no hint for it, or a timeout passes; meanwhile `/ready` says
//! 503 and peers ask it last for reads (writes still go to it). Riak waits for its services
//! and for handoffs before it takes traffic in the same way.
//!
//! This module holds the plain state and the pure decision; `membership::catch_up` drives it.

use parking_lot::Mutex;
use riftkv_core::types::NodeId;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

/// How long a peer that said it is catching up counts as such without saying it again (it asks
/// every gossip interval; one that died meanwhile is not avoided for ever).
pub const PEER_CATCHING_UP_TTL_MS: u64 = 10_000;

/// What one peer answered to "how many hints do you hold for me?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAnswer {
    /// It holds this many.
    Holds(u64),
    /// No answer that tells: unreachable, timed out, or a version that does not know the
    /// question. Such a peer cannot hold the node back (only reachable peers deliver hints).
    Unknown,
}

/// Where catching up stands after a round of answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Peers still hold hints: keep asking.
    CatchingUp { pending: BTreeMap<NodeId, u64> },
    /// Every peer that answered holds none.
    CaughtUp,
    /// The timeout passed first; these peers still held hints.
    GaveUp { pending: BTreeMap<NodeId, u64> },
}

/// Decides on one round of answers, `elapsed_ms` after the node started catching up.
pub fn judge(answers: &BTreeMap<NodeId, PeerAnswer>, elapsed_ms: u64, timeout_ms: u64) -> Verdict {
    let pending: BTreeMap<NodeId, u64> = answers
        .iter()
        .filter_map(|(peer, a)| match a {
            PeerAnswer::Holds(n) if *n > 0 => Some((peer.clone(), *n)),
            _ => None,
        })
        .collect();
    if pending.is_empty() {
        Verdict::CaughtUp
    } else if elapsed_ms >= timeout_ms {
        Verdict::GaveUp { pending }
    } else {
        Verdict::CatchingUp { pending }
    }
}

/// Whether a node starts catching up: only when it restarts over a ring it already belonged
/// to with other members (a fresh node, or a founder alone, has nobody's hints to wait for).
pub fn starts_catching_up(had_state: bool, other_members: usize) -> bool {
    had_state && other_members > 0
}

/// The catching-up state of this node, and which peers said they are catching up.
#[derive(Debug, Default)]
pub struct CatchUp {
    catching_up: AtomicBool,
    /// Hints each peer reported holding for this node in the last round.
    pending: Mutex<BTreeMap<NodeId, u64>>,
    /// Peers catching up, with the instant (ms, this node's clock) they last said so.
    peers: Mutex<HashMap<NodeId, u64>>,
}

impl CatchUp {
    pub fn new(catching_up: bool) -> CatchUp {
        CatchUp {
            catching_up: AtomicBool::new(catching_up),
            ..CatchUp::default()
        }
    }

    pub fn is_catching_up(&self) -> bool {
        self.catching_up.load(Ordering::SeqCst)
    }

    /// Hints the peers reported holding for this node, summed (0 before the first answers).
    pub fn hints_pending(&self) -> u64 {
        self.pending.lock().values().sum()
    }

    /// Records a round that is not over yet.
    pub fn still_pending(&self, pending: BTreeMap<NodeId, u64>) {
        *self.pending.lock() = pending;
    }

    /// Catching up is over (caught up or given up).
    pub fn finish(&self) {
        self.pending.lock().clear();
        self.catching_up.store(false, Ordering::SeqCst);
    }

    /// `peer` says it is (or is no longer) catching up, at `now_ms`.
    pub fn note_peer(&self, peer: &NodeId, catching_up: bool, now_ms: u64) {
        let mut peers = self.peers.lock();
        if catching_up {
            peers.insert(peer.clone(), now_ms);
        } else {
            peers.remove(peer);
        }
    }

    /// Peers catching up at `now_ms`: reads ask them last.
    pub fn peers_catching_up(&self, now_ms: u64) -> BTreeSet<NodeId> {
        let mut peers = self.peers.lock();
        peers.retain(|_, at| now_ms.saturating_sub(*at) < PEER_CATCHING_UP_TTL_MS);
        peers.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::from(s)
    }

    #[test]
    fn caught_up_once_every_answering_peer_holds_nothing() {
        let mut a = BTreeMap::new();
        a.insert(id("a"), PeerAnswer::Holds(0));
        a.insert(id("b"), PeerAnswer::Unknown);
        assert_eq!(judge(&a, 10, 60_000), Verdict::CaughtUp);
        a.insert(id("c"), PeerAnswer::Holds(12));
        let expect: BTreeMap<NodeId, u64> = [(id("c"), 12)].into();
        assert_eq!(
            judge(&a, 10, 60_000),
            Verdict::CatchingUp {
                pending: expect.clone()
            }
        );
        assert_eq!(
            judge(&a, 60_000, 60_000),
            Verdict::GaveUp { pending: expect }
        );
        assert_eq!(judge(&BTreeMap::new(), 0, 60_000), Verdict::CaughtUp);
    }

    #[test]
    fn only_a_restart_into_a_shared_ring_catches_up() {
        assert!(starts_catching_up(true, 2));
        assert!(!starts_catching_up(false, 2), "a fresh node joining");
        assert!(!starts_catching_up(true, 0), "a lone founder");
    }

    #[test]
    fn a_peer_counts_as_catching_up_until_it_says_otherwise_or_goes_quiet() {
        let c = CatchUp::new(false);
        c.note_peer(&id("a"), true, 1_000);
        c.note_peer(&id("b"), true, 1_000);
        assert_eq!(c.peers_catching_up(2_000).len(), 2);
        c.note_peer(&id("a"), false, 2_000);
        assert_eq!(c.peers_catching_up(2_000), [id("b")].into());
        assert!(
            c.peers_catching_up(1_000 + PEER_CATCHING_UP_TTL_MS)
                .is_empty()
        );
    }

    #[test]
    fn finishing_clears_the_flag_and_the_count() {
        let c = CatchUp::new(true);
        c.still_pending([(id("a"), 5), (id("b"), 2)].into());
        assert!(c.is_catching_up());
        assert_eq!(c.hints_pending(), 7);
        c.finish();
        assert!(!c.is_catching_up());
        assert_eq!(c.hints_pending(), 0);
    }
}
