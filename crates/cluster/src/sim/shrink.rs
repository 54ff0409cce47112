//! Shrinking a failing schedule: remove chunks of steps (halves, then quarters, ... down to
//! single steps) and keep a removal only when the smaller schedule still fails. The caller's
//! predicate decides what "still fails" means (the simulation retries each candidate, since
//! task timing is not fully deterministic). Bounded by a time budget.

use super::schedule::Schedule;
use std::future::Future;
use std::time::{Duration, Instant};

/// What shrinking did.
#[derive(Debug)]
pub struct Shrunk {
    pub schedule: Schedule,
    /// Candidates tried.
    pub tries: usize,
    /// The budget ran out before single-step removals stopped helping.
    pub out_of_time: bool,
}

/// The smallest schedule found that `still_fails`, starting from `s` (assumed failing).
pub async fn shrink<F, Fut>(s: &Schedule, mut still_fails: F, budget: Duration) -> Shrunk
where
    F: FnMut(Schedule) -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + budget;
    let mut cur = s.clone();
    let mut tries = 0;
    let mut chunk = (cur.steps.len() / 2).max(1);
    loop {
        let mut progress = false;
        let mut i = 0;
        while i < cur.steps.len() {
            if Instant::now() >= deadline {
                return Shrunk {
                    schedule: cur,
                    tries,
                    out_of_time: true,
                };
            }
            let end = (i + chunk).min(cur.steps.len());
            let mut cand = cur.clone();
            cand.steps.drain(i..end);
            tries += 1;
            if still_fails(cand.clone()).await {
                cur = cand;
                progress = true;
            } else {
                i = end;
            }
        }
        if chunk == 1 && !progress {
            break;
        }
        if !progress || chunk > 1 {
            chunk = (chunk / 2).max(1);
        }
    }
    Shrunk {
        schedule: cur,
        tries,
        out_of_time: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::schedule::Step;

    fn sched(n: u16) -> Schedule {
        Schedule {
            seed: 1,
            nodes: 4,
            ring_size: 8,
            keys: 3,
            steps: (0..n).map(|ms| Step::Pause { ms }).collect(),
        }
    }

    fn has(s: &Schedule, ms: u16) -> bool {
        s.steps.contains(&Step::Pause { ms })
    }

    #[tokio::test]
    async fn shrinks_to_the_steps_that_matter() {
        let s = sched(40);
        let out = shrink(
            &s,
            |c| async move { has(&c, 3) && has(&c, 17) && has(&c, 31) },
            Duration::from_secs(10),
        )
        .await;
        let ms: Vec<u16> = out
            .schedule
            .steps
            .iter()
            .map(|s| match s {
                Step::Pause { ms } => *ms,
                _ => 0,
            })
            .collect();
        assert_eq!(ms, vec![3, 17, 31]);
        assert!(!out.out_of_time);
        assert!(out.tries < 120, "{} tries", out.tries);
    }

    #[tokio::test]
    async fn a_flaky_predicate_only_keeps_confirmed_reductions() {
        // Fails only when step 5 is present, and only every other time it is asked.
        let mut n = 0;
        let out = shrink(
            &sched(10),
            |c| {
                n += 1;
                let odd = n % 2 == 1;
                async move { odd && has(&c, 5) }
            },
            Duration::from_secs(10),
        )
        .await;
        assert!(has(&out.schedule, 5));
    }

    #[tokio::test]
    async fn the_budget_bounds_shrinking() {
        let out = shrink(&sched(50), |_| async { false }, Duration::ZERO).await;
        assert!(out.out_of_time);
        assert_eq!(out.schedule.steps.len(), 50);
    }
}
