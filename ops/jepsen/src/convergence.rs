//! Convergence: after the final heal, without any client reads (which would repair replicas
//! on the way), wait until every primary replica's own copy of every key is identical and no
//! node holds a pending hint, and measure how long that took.

use crate::client::{Client, LocalCopy};
use crate::cluster::api_url;
use serde::Serialize;
use std::time::{Duration, Instant};

/// The outcome of the wait.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Convergence {
    pub converged: bool,
    /// Seconds from the final heal until every replica agreed.
    pub seconds: Option<f64>,
    /// When it did not converge: what still differed at the end.
    pub diverging: Vec<String>,
}

/// True when every replica answered and all hold the same siblings (a replica that holds
/// nothing agrees only with others holding nothing).
pub fn agree(copies: &[Option<LocalCopy>]) -> bool {
    let strip = |c: &Option<LocalCopy>| c.as_ref().map(|c| c.siblings.clone());
    match copies.first() {
        None => true,
        Some(first) => copies.iter().all(|c| strip(c) == strip(first)),
    }
}

fn node_index(name: &str) -> Option<usize> {
    name.strip_prefix('n')?.parse().ok()
}

/// Polls until convergence or `timeout` after `healed_at`.
pub fn wait(
    client: &Client,
    nodes: usize,
    bucket: &str,
    keys: &[String],
    healed_at: Instant,
    timeout: Duration,
    stop: &dyn Fn() -> bool,
) -> Convergence {
    let deadline = healed_at + timeout;
    let mut primaries: Vec<Option<Vec<usize>>> = vec![None; keys.len()];
    let mut diverging = Vec::new();
    // Bounded by the deadline; each round sleeps.
    loop {
        diverging.clear();
        for (k, key) in keys.iter().enumerate() {
            if primaries[k].is_none() {
                primaries[k] = (1..=nodes).find_map(|i| {
                    client
                        .primaries(&api_url(i), bucket, key)
                        .ok()
                        .map(|p| p.iter().filter_map(|n| node_index(n)).collect())
                });
            }
            let Some(owners) = &primaries[k] else {
                diverging.push(format!("{key}: no node answered its preference list"));
                continue;
            };
            let mut copies = Vec::new();
            let mut failed = None;
            for &i in owners {
                match client.local(&api_url(i), bucket, key) {
                    Ok(c) => copies.push(c),
                    Err(e) => failed = Some(format!("{key}: n{i} did not answer ({e})")),
                }
            }
            if let Some(f) = failed {
                diverging.push(f);
            } else if !agree(&copies) {
                let sizes: Vec<String> = owners
                    .iter()
                    .zip(&copies)
                    .map(|(i, c)| {
                        format!(
                            "n{i}: {}",
                            c.as_ref().map_or("nothing".to_string(), |c| format!(
                                "{} sibling(s), {} bytes",
                                c.siblings.len(),
                                c.siblings.iter().map(|s| s.0.len()).sum::<usize>()
                            ))
                        )
                    })
                    .collect();
                diverging.push(format!("{key}: replicas differ ({})", sizes.join("; ")));
            }
        }
        let hints: u64 = (1..=nodes)
            .map(|i| hints_pending(client, i).unwrap_or(1))
            .sum();
        if hints > 0 {
            diverging.push(format!("{hints} hint(s) still pending"));
        }
        if diverging.is_empty() {
            return Convergence {
                converged: true,
                seconds: Some(healed_at.elapsed().as_secs_f64()),
                diverging: Vec::new(),
            };
        }
        if Instant::now() >= deadline || stop() {
            return Convergence {
                converged: false,
                seconds: None,
                diverging: diverging.clone(),
            };
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn hints_pending(client: &Client, i: usize) -> Option<u64> {
    let v = client.status_json(&api_url(i))?;
    v.get("hints_pending").and_then(|h| h.as_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(vals: &[&str]) -> Option<LocalCopy> {
        Some(LocalCopy {
            siblings: vals.iter().map(|v| (v.to_string(), false)).collect(),
            hinted_for: None,
        })
    }

    #[test]
    fn agreement_compares_sibling_content() {
        assert!(agree(&[copy(&["a"]), copy(&["a"]), copy(&["a"])]));
        assert!(!agree(&[copy(&["a"]), copy(&["a", "b"])]));
        assert!(!agree(&[copy(&["a"]), None]));
        assert!(agree(&[None, None]));
        assert!(agree(&[]));
        assert_eq!(node_index("n12"), Some(12));
        assert_eq!(node_index("x"), None);
    }
}
