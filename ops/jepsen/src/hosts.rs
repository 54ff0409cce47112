//! The test network: one network namespace per node (`rkvj-n<i>`), each joined by a veth pair
//! to the bridge `rkvj-br0` in the root namespace, on the private subnet 10.77.0.0/24 that
//! exists nowhere else. The harness (root namespace) reaches every node through the bridge
//! address. Partitions are iptables rules inside the node namespaces only; nodes have no
//! default route, so nothing they send can leave the test network.
//!
//! Everything is named with the `rkvj-` prefix so a leftover from a crashed run can be found
//! and removed at the next start.

use crate::nemesis::Grudge;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Prefix of every namespace and link the harness creates.
pub const PREFIX: &str = "rkvj-";
/// The bridge in the root namespace.
pub const BRIDGE: &str = "rkvj-br0";
/// The bridge's own address (the harness's side of the test network).
pub const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);
/// Prefix length of the test subnet.
pub const SUBNET_BITS: u8 = 24;

/// Why the network could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot run {cmd}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("`{cmd}` failed: {stderr}")]
    Failed { cmd: String, stderr: String },
}

/// Namespace of node `i` (1-based).
pub fn ns_name(i: usize) -> String {
    format!("{PREFIX}n{i}")
}

/// Root-namespace end of node `i`'s veth pair.
pub fn host_veth(i: usize) -> String {
    format!("{PREFIX}v{i}")
}

/// Namespace end of node `i`'s veth pair.
pub fn node_veth(i: usize) -> String {
    format!("{PREFIX}p{i}")
}

/// Address of node `i`.
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, u8::try_from(i).unwrap_or(u8::MAX))
}

/// Runs a command, turning a non-zero exit into an error carrying its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, HostError> {
    let cmd = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| HostError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(HostError::Failed {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Runs a command inside node `i`'s namespace.
fn run_in(i: usize, program: &str, args: &[&str]) -> Result<String, HostError> {
    let ns = ns_name(i);
    let mut full = vec!["netns", "exec", ns.as_str(), program];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Harness namespaces that exist now.
pub fn our_namespaces() -> Vec<String> {
    run("ip", &["netns", "list"])
        .map(|out| parse_netns_list(&out))
        .unwrap_or_default()
}

/// Names from `ip netns list` output that carry our prefix.
pub fn parse_netns_list(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX))
        .map(str::to_string)
        .collect()
}

/// Names from `ip -o link show` output that carry our prefix (`rkvj-v1@if2` gives `rkvj-v1`).
pub fn parse_link_list(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| n.starts_with(PREFIX))
        .collect()
}

/// Pids of processes living in namespace `ns`.
pub fn pids_in(ns: &str) -> Vec<i32> {
    run("ip", &["netns", "pids", ns])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes everything a harness run may have left: processes in our namespaces (killed),
/// the namespaces (and with them their iptables rules and veth ends), our links and the
/// bridge. Safe when nothing is left. Returns what it removed, for the log.
pub fn clean_leftovers() -> Vec<String> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let mut removed = Vec::new();
    for ns in our_namespaces() {
        for pid in pids_in(&ns) {
            // A stopped process must be continued to die promptly; SIGKILL works either way.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
            removed.push(format!("process {pid} in {ns}"));
        }
        // Give the kernel a moment to tear the processes down before the namespace goes.
        for _ in 0..50 {
            if pids_in(&ns).is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if run("ip", &["netns", "del", &ns]).is_ok() {
            removed.push(format!("namespace {ns}"));
        }
    }
    if let Ok(out) = run("ip", &["-o", "link", "show"]) {
        let mut links = parse_link_list(&out);
        // Bridge last: veths first so the bridge is empty when it goes.
        links.sort_by_key(|l| l == BRIDGE);
        for l in links {
            if run("ip", &["link", "del", &l]).is_ok() {
                removed.push(format!("link {l}"));
            }
        }
    }
    removed
}

/// The test network of a run. Dropping it removes everything.
pub struct Network {
    nodes: usize,
    torn_down: bool,
}

impl Network {
    /// Builds the bridge and `nodes` namespaces. Partial state is removed on failure.
    pub fn create(nodes: usize) -> Result<Network, HostError> {
        let net = Network {
            nodes,
            torn_down: false,
        };
        net.build()?;
        Ok(net)
    }

    fn build(&self) -> Result<(), HostError> {
        let bridge_cidr = format!("{BRIDGE_IP}/{SUBNET_BITS}");
        run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        run("ip", &["addr", "add", &bridge_cidr, "dev", BRIDGE])?;
        run("ip", &["link", "set", BRIDGE, "up"])?;
        for i in 1..=self.nodes {
            let (ns, hv, nv) = (ns_name(i), host_veth(i), node_veth(i));
            let cidr = format!("{}/{SUBNET_BITS}", node_ip(i));
            run("ip", &["netns", "add", &ns])?;
            run(
                "ip",
                &["link", "add", &hv, "type", "veth", "peer", "name", &nv],
            )?;
            run("ip", &["link", "set", &hv, "master", BRIDGE])?;
            run("ip", &["link", "set", &hv, "up"])?;
            run("ip", &["link", "set", &nv, "netns", &ns])?;
            run("ip", &["-n", &ns, "addr", "add", &cidr, "dev", &nv])?;
            run("ip", &["-n", &ns, "link", "set", &nv, "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Applies a partition: inside each node's namespace, drop inbound packets from the nodes
    /// it holds a grudge against. Replaces any earlier partition.
    pub fn partition(&self, grudge: &Grudge) -> Result<(), HostError> {
        self.heal()?;
        for (&a, others) in grudge {
            for &b in others {
                let src = node_ip(b).to_string();
                run_in(
                    a,
                    "iptables",
                    &["-w", "-A", "INPUT", "-s", &src, "-j", "DROP"],
                )?;
            }
        }
        Ok(())
    }

    /// Removes every partition rule.
    pub fn heal(&self) -> Result<(), HostError> {
        for i in 1..=self.nodes {
            run_in(i, "iptables", &["-w", "-F", "INPUT"])?;
        }
        Ok(())
    }

    /// Removes the network; idempotent.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        clean_leftovers();
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.teardown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        assert_eq!(ns_name(3), "rkvj-n3");
        assert_eq!(host_veth(3), "rkvj-v3");
        assert_eq!(node_veth(3), "rkvj-p3");
        assert_eq!(node_ip(3), Ipv4Addr::new(10, 77, 0, 3));
        // --nodes allows up to 200, below the bridge's .254
        assert!(node_ip(200).is_private());
        assert_ne!(node_ip(200), BRIDGE_IP);
    }

    #[test]
    fn listings_are_filtered_to_our_prefix() {
        let ns = "rkvj-n1 (id: 0)\nother\nrkvj-n2\n";
        assert_eq!(parse_netns_list(ns), vec!["rkvj-n1", "rkvj-n2"]);
        let links = "1: lo: <LOOPBACK> mtu\n7: rkvj-br0: <BROADCAST> mtu\n9: rkvj-v1@if8: <UP> mtu\n4: eth0: <UP>\n";
        assert_eq!(parse_link_list(links), vec!["rkvj-br0", "rkvj-v1"]);
    }
}
