//! Schedules: the plain data a simulation run executes, generated from a seed.
//!
//! A schedule names nodes either by index or as "the `rank`-th primary of key `k`", resolved
//! when the step runs (the ring does not change during a run). The second form is what makes
//! amnesia scenarios likely: a write through a key's primary, a fault on that same node, and
//! another write through it. Steps that cannot run in the cluster's current state (a write
//! through a node that is down, a kill that would leave fewer than two nodes up) are skipped
//! by the runner, so removing steps while shrinking never makes a schedule invalid.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A node: by index (1-based), or the `rank`-th primary (0-based) of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Who {
    Node(u8),
    Primary { key: u8, rank: u8 },
}

/// Which context a write carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ctx {
    /// None: a put concurrent with everything, or a delete that reads a quorum first.
    Blind,
    /// The context of the newest recorded read of the key.
    Latest,
    /// The context of the read before it (a stale context).
    Older,
}

/// One step of a schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// `id` names the value (`s{seed}-w{id}`), so values stay stable while shrinking.
    /// `bg`: start the write and go on without waiting for its answer.
    Put {
        id: u32,
        key: u8,
        via: Who,
        ctx: Ctx,
        w: u8,
        dw: u8,
        bg: bool,
    },
    Delete {
        id: u32,
        key: u8,
        via: Who,
        ctx: Ctx,
        w: u8,
        bg: bool,
    },
    Get {
        key: u8,
        via: Who,
        r: u8,
    },
    /// Cuts the nodes whose bit is set (bit `i - 1` = node `i`) off from the others.
    Partition {
        side: u8,
    },
    Heal,
    Kill(Who),
    /// Starts a killed node again; a running one crashes and restarts on the same boot.
    Restart(Who),
    Wipe(Who),
    Damage {
        who: Who,
        key: u8,
    },
    /// A machine crash losing every unsynced write after the first `keep` (255 = keep all).
    PowerCut {
        who: Who,
        keep: u8,
    },
    /// One hint delivery round on a node.
    Hints(Who),
    /// One hint delivery round on every running node.
    HintsAll,
    /// An anti-entropy exchange of `key`'s partition between two of its primaries (ranks).
    Aae {
        key: u8,
        a: u8,
        b: u8,
    },
    /// One reaping round on the owner of `key`'s partition.
    Reap {
        key: u8,
    },
    Pause {
        ms: u16,
    },
    /// Delays every message by up to `max_ms` (each leg, seeded) until the next heal, so
    /// replica writes are still in flight when later steps run.
    Jitter {
        max_ms: u8,
    },
}

/// A run's cluster shape and steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub seed: u64,
    pub nodes: u8,
    pub ring_size: u32,
    pub keys: u8,
    pub steps: Vec<Step>,
}

impl Schedule {
    /// The value written by the write step `id`.
    pub fn value(&self, id: u32) -> String {
        format!("s{}-w{id}", self.seed)
    }

    /// One line of JSON (the form `RIFTKV_SIM_SCHEDULE` replays).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Result<Schedule, String> {
        serde_json::from_str(s).map_err(|e| format!("bad schedule: {e}"))
    }
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Node(i) => write!(f, "n{i}"),
            Who::Primary { key, rank } => write!(f, "P{rank}(k{key})"),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bg = |b: &bool| if *b { " &" } else { "" };
        match self {
            Step::Put {
                id,
                key,
                via,
                ctx,
                w,
                dw,
                bg: b,
            } => write!(
                f,
                "put k{key}=w{id} via {via} ctx={ctx:?} w={w} dw={dw}{}",
                bg(b)
            ),
            Step::Delete {
                id,
                key,
                via,
                ctx,
                w,
                bg: b,
            } => write!(
                f,
                "delete(w{id}) k{key} via {via} ctx={ctx:?} w={w}{}",
                bg(b)
            ),
            Step::Get { key, via, r } => write!(f, "get k{key} via {via} r={r}"),
            Step::Partition { side } => write!(f, "partition {side:#07b}"),
            Step::Heal => write!(f, "heal"),
            Step::Kill(w) => write!(f, "kill {w}"),
            Step::Restart(w) => write!(f, "restart {w}"),
            Step::Wipe(w) => write!(f, "wipe {w}"),
            Step::Damage { who, key } => write!(f, "damage {who} k{key}"),
            Step::PowerCut { who, keep } => write!(f, "power-cut {who} keep={keep}"),
            Step::Hints(w) => write!(f, "hints {w}"),
            Step::HintsAll => write!(f, "hints all"),
            Step::Aae { key, a, b } => write!(f, "aae k{key} P{a}<->P{b}"),
            Step::Reap { key } => write!(f, "reap k{key}"),
            Step::Pause { ms } => write!(f, "pause {ms}ms"),
            Step::Jitter { max_ms } => write!(f, "jitter up to {max_ms}ms"),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} ({} nodes, ring {}, {} keys, {} steps)",
            self.seed,
            self.nodes,
            self.ring_size,
            self.keys,
            self.steps.len()
        )?;
        for (i, s) in self.steps.iter().enumerate() {
            writeln!(f, "  {i:>3}. {s}")?;
        }
        Ok(())
    }
}

/// Generator knobs.
#[derive(Clone, Copy, Debug)]
pub struct GenOptions {
    /// Episodes per schedule, at least and at most (each is 1 to ~10 steps).
    pub episodes: (usize, usize),
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions { episodes: (8, 14) }
    }
}

/// What kinds of faults a seed leans on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Profile {
    /// Disk wipes, damaged records and power cuts, each followed by writes through the node.
    Amnesia,
    /// Partitions, kills and restarts only: no data is ever destroyed.
    Network,
    Mixed,
}

struct Gen {
    rng: StdRng,
    nodes: u8,
    keys: u8,
    next_id: u32,
    steps: Vec<Step>,
}

impl Gen {
    fn key(&mut self) -> u8 {
        self.rng.gen_range(0..self.keys)
    }

    fn node(&mut self) -> Who {
        Who::Node(self.rng.gen_range(1..=self.nodes))
    }

    /// A node to send a request to: a primary of `key` or any node.
    fn via(&mut self, key: u8) -> Who {
        if self.rng.gen_bool(0.5) {
            Who::Primary {
                key,
                rank: self.rng.gen_range(0..3),
            }
        } else {
            self.node()
        }
    }

    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    fn ctx(&mut self) -> Ctx {
        match self.rng.gen_range(0..10) {
            0..=3 => Ctx::Blind,
            4..=7 => Ctx::Latest,
            _ => Ctx::Older,
        }
    }

    /// A put; a context write usually reads first (read-modify-write), so the context is real.
    fn put(&mut self, key: u8, via: Who, ctx: Ctx) {
        if ctx == Ctx::Latest && self.rng.gen_bool(0.6) {
            self.get(key);
        }
        let w = self.rng.gen_range(1..=3);
        let dw = if self.rng.gen_bool(0.2) {
            self.rng.gen_range(1..=w)
        } else {
            0
        };
        let bg = self.rng.gen_bool(0.15);
        let id = self.id();
        self.steps.push(Step::Put {
            id,
            key,
            via,
            ctx,
            w,
            dw,
            bg,
        });
    }

    fn get(&mut self, key: u8) {
        let via = self.via(key);
        let r = self.rng.gen_range(1..=3);
        self.steps.push(Step::Get { key, via, r });
    }

    fn delete(&mut self, key: u8) {
        let via = self.via(key);
        let ctx = if self.rng.gen_bool(0.5) {
            Ctx::Blind
        } else {
            if self.rng.gen_bool(0.6) {
                self.get(key);
            }
            Ctx::Latest
        };
        let w = self.rng.gen_range(1..=3);
        let bg = self.rng.gen_bool(0.1);
        let id = self.id();
        self.steps.push(Step::Delete {
            id,
            key,
            via,
            ctx,
            w,
            bg,
        });
    }

    fn pause(&mut self) {
        let ms = self.rng.gen_range(5..=40);
        self.steps.push(Step::Pause { ms });
    }

    fn client_op(&mut self) {
        let key = self.key();
        match self.rng.gen_range(0..10) {
            0..=3 => {
                let via = self.via(key);
                let ctx = self.ctx();
                self.put(key, via, ctx);
            }
            4..=7 => self.get(key),
            _ => self.delete(key),
        }
    }

    /// A destructive fault on `who`, which must be followed by writes through it.
    fn amnesia_fault(&mut self, who: Who, key: u8) {
        let step = match self.rng.gen_range(0..3) {
            0 => Step::Wipe(who),
            1 => Step::Damage { who, key },
            _ => Step::PowerCut {
                who,
                keep: match self.rng.gen_range(0..4) {
                    0 => 255,
                    n => n - 1,
                },
            },
        };
        self.steps.push(step);
    }

    /// Write through a key's primary, make it forget, write through it again.
    fn amnesia(&mut self) {
        let key = self.key();
        let who = Who::Primary {
            key,
            rank: self.rng.gen_range(0..3),
        };
        if self.rng.gen_bool(0.5) {
            self.get(key);
        }
        let ctx = self.ctx();
        self.put(key, who, ctx);
        if self.rng.gen_bool(0.3) {
            // A second write, so the forgotten history is longer than one dot.
            self.put(key, who, Ctx::Latest);
        }
        if self.rng.gen_bool(0.3) {
            self.pause();
        }
        self.amnesia_fault(who, key);
        if self.rng.gen_bool(0.3) {
            self.pause();
        }
        match self.rng.gen_range(0..8) {
            // Repair brings the forgotten history back before the next write.
            0 => self.steps.push(Step::Aae {
                key,
                a: self.rng.gen_range(0..3),
                b: self.rng.gen_range(0..3),
            }),
            1 => self.steps.push(Step::Get {
                key,
                via: who,
                r: 3,
            }),
            _ => {}
        }
        let ctx = match self.rng.gen_range(0..10) {
            0..=5 => Ctx::Blind,
            6..=7 => Ctx::Older,
            _ => Ctx::Latest,
        };
        self.put(key, who, ctx);
        if self.rng.gen_bool(0.3) {
            self.get(key);
        }
    }

    /// Writes taken by fallbacks while primaries are down, then handed back.
    fn fallback(&mut self) {
        let key = self.key();
        let down: Vec<u8> = (0..self.rng.gen_range(1..=2)).collect();
        for rank in &down {
            self.steps
                .push(Step::Kill(Who::Primary { key, rank: *rank }));
        }
        self.pause();
        // Through the primary still up, or any node (which may be a primary now down: skipped).
        let via = if self.rng.gen_bool(0.5) {
            Who::Primary { key, rank: 2 }
        } else {
            self.node()
        };
        let ctx = self.ctx();
        self.put(key, via, ctx);
        if self.rng.gen_bool(0.5) {
            self.put(key, via, Ctx::Blind);
        }
        for rank in &down {
            self.steps
                .push(Step::Restart(Who::Primary { key, rank: *rank }));
        }
        self.pause();
        self.steps.push(Step::HintsAll);
        if self.rng.gen_bool(0.5) {
            // The same fallback coordinating again after its hint was delivered and deleted.
            self.put(key, via, Ctx::Blind);
        }
    }

    fn partition(&mut self) {
        let all = (1u8 << self.nodes) - 1;
        let side = self.rng.gen_range(1..all);
        self.steps.push(Step::Partition { side });
        self.pause();
        for _ in 0..self.rng.gen_range(1..=4) {
            self.client_op();
        }
        if self.rng.gen_bool(0.7) {
            self.steps.push(Step::Heal);
            self.pause();
        }
    }

    fn kill_restart(&mut self) {
        let who = if self.rng.gen_bool(0.5) {
            self.node()
        } else {
            let key = self.key();
            Who::Primary {
                key,
                rank: self.rng.gen_range(0..3),
            }
        };
        self.steps.push(Step::Kill(who));
        if self.rng.gen_bool(0.5) {
            self.pause();
        }
        for _ in 0..self.rng.gen_range(0..=2) {
            self.client_op();
        }
        if self.rng.gen_bool(0.8) {
            self.steps.push(Step::Restart(who));
            self.pause();
        }
    }

    fn delete_reap(&mut self) {
        let key = self.key();
        self.get(key);
        let id = self.id();
        self.steps.push(Step::Delete {
            id,
            key,
            via: Who::Primary { key, rank: 0 },
            ctx: if self.rng.gen_bool(0.5) {
                Ctx::Latest
            } else {
                Ctx::Blind
            },
            w: 3,
            bg: false,
        });
        self.pause();
        self.steps.push(Step::Reap { key });
        let rank = self.rng.gen_range(0..3);
        let ctx = self.ctx();
        self.put(key, Who::Primary { key, rank }, ctx);
    }

    fn repair(&mut self) {
        match self.rng.gen_range(0..4) {
            0 => {
                let who = self.node();
                self.steps.push(Step::Hints(who));
            }
            1 => self.steps.push(Step::HintsAll),
            2 => {
                let key = self.key();
                let via = self.node();
                self.steps.push(Step::Get { key, via, r: 3 });
            }
            _ => {
                let key = self.key();
                let a = self.rng.gen_range(0..3);
                let b = (a + self.rng.gen_range(1..3)) % 3;
                self.steps.push(Step::Aae { key, a, b });
            }
        }
    }

    fn random_destruction(&mut self) {
        let key = self.key();
        let who = self.via(key);
        self.amnesia_fault(who, key);
    }
}

/// The schedule of `seed` (pure: the same seed always gives the same schedule).
pub fn generate(seed: u64, opts: &GenOptions) -> Schedule {
    let mut rng = StdRng::seed_from_u64(seed);
    let nodes = rng.gen_range(4..=5);
    let ring_size = if rng.gen_bool(0.5) { 8 } else { 16 };
    let keys = rng.gen_range(3..=4);
    let profile = match rng.gen_range(0..10) {
        0..=4 => Profile::Amnesia,
        5..=7 => Profile::Network,
        _ => Profile::Mixed,
    };
    let episodes = rng.gen_range(opts.episodes.0..=opts.episodes.1.max(opts.episodes.0));
    let mut g = Gen {
        rng,
        nodes,
        keys,
        next_id: 0,
        steps: Vec::new(),
    };
    // A few writes first, so faults have something to lose.
    for _ in 0..g.rng.gen_range(1..=3) {
        let key = g.key();
        let via = g.via(key);
        g.put(key, via, Ctx::Blind);
    }
    if g.rng.gen_bool(0.3) {
        let max_ms = g.rng.gen_range(1..=6);
        g.steps.push(Step::Jitter { max_ms });
    }
    for _ in 0..episodes {
        let roll = g.rng.gen_range(0..100);
        match profile {
            Profile::Amnesia => match roll {
                0..=34 => g.amnesia(),
                35..=59 => g.client_op(),
                60..=69 => g.fallback(),
                70..=79 => g.repair(),
                80..=89 => g.delete_reap(),
                _ => g.kill_restart(),
            },
            Profile::Network => match roll {
                0..=29 => g.client_op(),
                30..=49 => g.partition(),
                50..=64 => g.kill_restart(),
                65..=79 => g.fallback(),
                80..=89 => g.delete_reap(),
                _ => g.repair(),
            },
            Profile::Mixed => match roll {
                0..=14 => g.amnesia(),
                15..=39 => g.client_op(),
                40..=54 => g.partition(),
                55..=64 => g.kill_restart(),
                65..=74 => g.fallback(),
                75..=82 => g.delete_reap(),
                83..=91 => g.repair(),
                _ => g.random_destruction(),
            },
        }
    }
    Schedule {
        seed,
        nodes,
        ring_size,
        keys,
        steps: g.steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_a_pure_function_of_the_seed() {
        let o = GenOptions::default();
        for seed in 0..50 {
            assert_eq!(generate(seed, &o), generate(seed, &o));
        }
        assert_ne!(generate(1, &o).steps, generate(2, &o).steps);
    }

    #[test]
    fn schedules_round_trip_through_json() {
        let s = generate(7, &GenOptions::default());
        assert_eq!(Schedule::from_json(&s.to_json()).unwrap(), s);
    }

    #[test]
    fn write_ids_are_unique_and_amnesia_is_common() {
        let mut amnesia_seeds = 0;
        for seed in 0..200 {
            let s = generate(seed, &GenOptions::default());
            let mut ids: Vec<u32> = s
                .steps
                .iter()
                .filter_map(|st| match st {
                    Step::Put { id, .. } | Step::Delete { id, .. } => Some(*id),
                    _ => None,
                })
                .collect();
            let n = ids.len();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), n, "seed {seed}");
            // A destructive fault on a key's primary followed by a write through it.
            let followed = s.steps.windows(2).any(|w| {
                matches!(
                    (&w[0], &w[1]),
                    (
                        Step::Wipe(a) | Step::Damage { who: a, .. } | Step::PowerCut { who: a, .. },
                        Step::Put { via: b, .. }
                    ) if a == b
                )
            });
            if followed {
                amnesia_seeds += 1;
            }
        }
        assert!(amnesia_seeds > 60, "only {amnesia_seeds} of 200 seeds");
    }
}
