//! Bounds on inbound connections, per remote IP address and in total: a flood of connections
//! (or a buggy client that never closes any) must not exhaust the node's tasks or descriptors.
//! Shared by the peer listener and the client API's listener.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Counts open connections against the two bounds.
#[derive(Debug)]
pub struct ConnLimiter {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection's place; given back when dropped.
#[derive(Debug)]
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl ConnLimiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnLimiter> {
        Arc::new(ConnLimiter {
            max_total,
            max_per_ip,
            open: Mutex::new(Open::default()),
        })
    }

    /// A place for one more connection from `ip`, or `None` when that address or the whole
    /// listener is at its bound (the caller closes the connection at once).
    pub fn try_admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnPermit> {
        let mut open = self.open.lock();
        let from_ip = open.per_ip.get(&ip).copied().unwrap_or(0);
        if open.total >= self.max_total || from_ip >= self.max_per_ip {
            return None;
        }
        open.total += 1;
        *open.per_ip.entry(ip).or_default() += 1;
        Some(ConnPermit {
            limiter: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().total
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_per_address_and_in_total_and_gives_places_back() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let l = ConnLimiter::new(3, 2);
        let a1 = l.try_admit(a).unwrap();
        let _a2 = l.try_admit(a).unwrap();
        assert!(l.try_admit(a).is_none(), "per-address bound");
        let _b1 = l.try_admit(b).unwrap();
        assert!(l.try_admit(b).is_none(), "total bound");
        assert_eq!(l.open(), 3);
        drop(a1);
        assert_eq!(l.open(), 2);
        assert!(l.try_admit(b).is_some(), "a freed place is reused");
        assert!(
            l.open.lock().per_ip.len() <= 2,
            "no entry leaks per address"
        );
    }
}
