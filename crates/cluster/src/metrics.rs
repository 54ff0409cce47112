//! Prometheus metrics of one node.
//!
//! Each [`Metrics`] owns its own registry instead of the process-global one, so several nodes
//! can run in one test process without their counters mixing. Every name starts with `riftkv_`;
//! the standard `process_*` metrics come from the process collector.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::Arc;
use std::time::Duration;

/// Latency buckets in seconds, 0.5 ms to 10 s: sub-millisecond local reads up to the longest
/// request timeout anyone should configure.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Siblings per read: 1 is healthy, a long tail means clients write without contexts.
pub const SIBLING_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 5.0, 10.0, 25.0, 50.0, 100.0];
/// Entries per version clock: bounded by the replicas that coordinate writes.
pub const CLOCK_ENTRY_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 16.0, 32.0];

/// Member statuses of the contract, pre-created at zero so dashboards see them from the start.
pub const MEMBER_STATUSES: &[&str] = &["joining", "valid", "leaving"];
/// Client operations whose quorum failures are pre-created at zero for alert rules.
pub const QUORUM_OPS: &[&str] = &["get", "put", "delete"];
/// Server-error codes of [`QUORUM_OPS`] pre-created at zero in `requests_total`: a counter
/// series that first appears already at 1 shows no increase to `rate()`, so without this an
/// error rate would miss the first burst of errors.
pub const PRESET_ERROR_CODES: &[&str] = &["500", "503"];

/// Every metric of a node, registered in its own registry.
pub struct Metrics {
    registry: Registry,
    /// Client requests answered, by operation and answer code.
    pub requests_total: IntCounterVec,
    /// Client request latency in seconds, by operation.
    pub request_duration_seconds: HistogramVec,
    /// Client requests that could not meet their quorum, by operation.
    pub quorum_failures_total: IntCounterVec,
    /// Writes that counted at least one fallback (non-primary) replica toward W.
    pub sloppy_writes_total: IntCounter,
    /// Hints stored on this node waiting for their owner.
    pub hints_pending: IntGauge,
    /// Hints delivered to their owner and dropped here.
    pub hints_delivered_total: IntCounter,
    /// Replicas updated by read repair.
    pub read_repairs_total: IntCounter,
    /// Anti-entropy tree exchanges completed.
    pub aae_exchanges_total: IntCounter,
    /// Keys repaired by anti-entropy.
    pub aae_keys_repaired_total: IntCounter,
    /// Siblings in each read answer.
    pub siblings: Histogram,
    /// Entries in the version clock of each object written.
    pub clock_entries: Histogram,
    /// Coordinated writes that took a new write identity (epoch) for their key.
    pub write_identities_total: IntCounter,
    /// Merges that found a replica holding writes this node issued and lost (custody void).
    pub custody_lost_total: IntCounter,
    /// Ring members by status, as this node sees them.
    pub members: IntGaugeVec,
    /// 1 when the failure detector considers the peer reachable, else 0.
    pub peer_up: IntGaugeVec,
    /// Partitions this node owns on the current ring.
    pub partitions_owned: IntGauge,
    /// Partition handoffs this node still has to send (ring-change transfers and drains).
    pub handoffs_pending: IntGauge,
    /// Inter-node requests sent, by message type and outcome.
    pub rpc_requests_total: IntCounterVec,
    /// Inter-node request latency in seconds, by message type.
    pub rpc_duration_seconds: HistogramVec,
    /// Estimated bytes stored on disk by this node.
    pub storage_bytes: IntGauge,
    /// Records found corrupt on disk (checksum or decode failure) and skipped.
    pub storage_corrupt_records_total: IntCounter,
    /// Bytes the storage engine's compaction still has to rewrite.
    pub storage_pending_compaction_bytes: IntGauge,
    /// Compactions running now.
    pub storage_running_compactions: IntGauge,
    /// Bytes held by the storage engine's block cache.
    pub storage_block_cache_bytes: IntGauge,
    /// Bytes of blob files no key refers to any more.
    pub storage_blob_garbage_bytes: IntGauge,
    /// Going-down notices this node sent at shutdown that a member acknowledged.
    pub going_down_sent_total: IntCounter,
    /// Going-down notices received from members shutting down.
    pub going_down_received_total: IntCounter,
    /// 1 while this node, restarted, waits for its peers' hints (not ready), else 0.
    pub catching_up: IntGauge,
    /// Always 1; the label carries the binary version.
    pub build_info: IntGaugeVec,
}

fn name(short: &str) -> String {
    format!("riftkv_{short}")
}

/// Builds and registers a metric; registration on a fresh registry only fails on a duplicate
/// or malformed name, which is a programming error caught by the tests below.
fn reg<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<T>,
) -> T {
    let m = metric.expect("metric definition is valid");
    registry
        .register(Box::new(m.clone()))
        .expect("metric names are unique");
    m
}

impl Metrics {
    /// Creates a registry holding every metric, the process metrics, and `build_info`.
    pub fn new() -> Arc<Metrics> {
        let r = Registry::new();
        let counter = |short: &str, help: &str| reg(&r, IntCounter::new(name(short), help));
        let gauge = |short: &str, help: &str| reg(&r, IntGauge::new(name(short), help));
        let counter_vec = |short: &str, help: &str, labels: &[&str]| {
            reg(&r, IntCounterVec::new(Opts::new(name(short), help), labels))
        };
        let gauge_vec = |short: &str, help: &str, labels: &[&str]| {
            reg(&r, IntGaugeVec::new(Opts::new(name(short), help), labels))
        };
        let hist = |short: &str, help: &str, buckets: &[f64]| {
            reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(name(short), help).buckets(buckets.to_vec()),
                ),
            )
        };
        let hist_vec = |short: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(name(short), help).buckets(LATENCY_BUCKETS.to_vec()),
                    labels,
                ),
            )
        };

        let m = Metrics {
            requests_total: counter_vec(
                "requests_total",
                "Client API requests answered, by operation and answer code.",
                &["op", "code"],
            ),
            request_duration_seconds: hist_vec(
                "request_duration_seconds",
                "Client API request latency in seconds, by operation.",
                &["op"],
            ),
            quorum_failures_total: counter_vec(
                "quorum_failures_total",
                "Client requests that could not reach their r/w/dw/pr/pw quorum, by operation.",
                &["op"],
            ),
            sloppy_writes_total: counter(
                "sloppy_writes_total",
                "Writes acknowledged with at least one fallback (non-primary) replica counted toward w.",
            ),
            hints_pending: gauge(
                "hints_pending",
                "Hinted writes stored on this node waiting for their owner to come back.",
            ),
            hints_delivered_total: counter(
                "hints_delivered_total",
                "Hinted writes delivered to their owner and removed from this node.",
            ),
            read_repairs_total: counter(
                "read_repairs_total",
                "Stale or missing replicas updated by read repair.",
            ),
            aae_exchanges_total: counter(
                "aae_exchanges_total",
                "Active anti-entropy Merkle tree exchanges completed with another replica.",
            ),
            aae_keys_repaired_total: counter(
                "aae_keys_repaired_total",
                "Keys found different by active anti-entropy and repaired.",
            ),
            siblings: hist(
                "siblings",
                "Number of sibling versions in each read answer.",
                SIBLING_BUCKETS,
            ),
            clock_entries: hist(
                "clock_entries",
                "Number of entries in the version clock of each object written.",
                CLOCK_ENTRY_BUCKETS,
            ),
            write_identities_total: counter(
                "write_identities_total",
                "Coordinated writes that took a new write identity (epoch) for their key: first writes, and writes after this node may have forgotten the key's history.",
            ),
            custody_lost_total: counter(
                "custody_lost_total",
                "Copies merged in that held writes this node had issued and no longer held (a lost disk, record or WAL tail).",
            ),
            members: gauge_vec(
                "members",
                "Cluster members by status (joining, valid, leaving), as this node sees the ring.",
                &["status"],
            ),
            peer_up: gauge_vec(
                "peer_up",
                "1 when the failure detector considers the peer node reachable, else 0.",
                &["peer"],
            ),
            partitions_owned: gauge("partitions_owned", "Ring partitions owned by this node."),
            handoffs_pending: gauge(
                "handoffs_pending",
                "Partition handoffs this node still has to send: transfers of a pending ring change, and partitions it holds but no longer replicates.",
            ),
            rpc_requests_total: counter_vec(
                "rpc_requests_total",
                "Inter-node requests sent, by message type and outcome.",
                &["msg", "outcome"],
            ),
            rpc_duration_seconds: hist_vec(
                "rpc_duration_seconds",
                "Inter-node request round-trip latency in seconds, by message type.",
                &["msg"],
            ),
            storage_bytes: gauge(
                "storage_bytes",
                "Estimated bytes of data stored on disk by this node.",
            ),
            storage_corrupt_records_total: counter(
                "storage_corrupt_records_total",
                "Records found corrupt on disk (checksum or decode failure) and skipped.",
            ),
            storage_pending_compaction_bytes: gauge(
                "storage_pending_compaction_bytes",
                "Bytes the storage engine estimates compaction still has to rewrite.",
            ),
            storage_running_compactions: gauge(
                "storage_running_compactions",
                "Compactions the storage engine is running now.",
            ),
            storage_block_cache_bytes: gauge(
                "storage_block_cache_bytes",
                "Bytes held by the storage engine's block cache.",
            ),
            storage_blob_garbage_bytes: gauge(
                "storage_blob_garbage_bytes",
                "Bytes of blob files that no key refers to any more, waiting for garbage collection.",
            ),
            going_down_sent_total: counter(
                "going_down_sent_total",
                "Going-down notices this node sent while shutting down that a member acknowledged.",
            ),
            going_down_received_total: counter(
                "going_down_received_total",
                "Going-down notices received from members shutting down (each routes around the sender at once).",
            ),
            catching_up: gauge(
                "catching_up",
                "1 while this node, restarted, waits for its peers to deliver the hints they hold for it (GET /ready answers 503), else 0.",
            ),
            build_info: gauge_vec(
                "build_info",
                "Always 1; the version label is the RiftKV release of this binary.",
                &["version"],
            ),
            registry: r.clone(),
        };

        for status in MEMBER_STATUSES {
            m.members.with_label_values(&[status]).set(0);
        }
        for op in QUORUM_OPS {
            m.quorum_failures_total.with_label_values(&[op]).reset();
            for code in PRESET_ERROR_CODES {
                m.requests_total.with_label_values(&[op, code]).reset();
            }
        }
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        #[cfg(target_os = "linux")]
        {
            // Only fails if another collector already registered these names here.
            let _ = m.registry.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ));
        }
        Arc::new(m)
    }

    /// The registry, for callers that add their own collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            return format!("# riftkv: metrics encoding failed: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Content-Type of [`Metrics::render`]'s output.
    pub fn content_type(&self) -> &'static str {
        "text/plain; version=0.0.4; charset=utf-8"
    }

    /// Records one answered client request.
    pub fn observe_request(&self, op: &str, code: &str, elapsed: Duration) {
        self.requests_total.with_label_values(&[op, code]).inc();
        self.request_duration_seconds
            .with_label_values(&[op])
            .observe(elapsed.as_secs_f64());
    }

    /// Records one finished inter-node request.
    pub fn observe_rpc(&self, msg: &str, outcome: &str, elapsed: Duration) {
        self.rpc_requests_total
            .with_label_values(&[msg, outcome])
            .inc();
        self.rpc_duration_seconds
            .with_label_values(&[msg])
            .observe(elapsed.as_secs_f64());
    }

    /// Sets a peer's reachability.
    pub fn set_peer_up(&self, peer: &str, up: bool) {
        self.peer_up.with_label_values(&[peer]).set(i64::from(up));
    }

    /// Drops a peer's series once it has left the cluster, so label sets stay bounded.
    pub fn forget_peer(&self, peer: &str) {
        let _ = self.peer_up.remove_label_values(&[peer]);
    }

    /// Sets the member counts by status; statuses absent from `counts` are set to zero.
    pub fn set_members(&self, counts: &[(&str, i64)]) {
        for status in MEMBER_STATUSES {
            let n = counts
                .iter()
                .filter(|(s, _)| s == status)
                .map(|(_, n)| *n)
                .sum();
            self.members.with_label_values(&[status]).set(n);
        }
        for (status, n) in counts {
            if !MEMBER_STATUSES.contains(status) {
                self.members.with_label_values(&[status]).set(*n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric name of the contract with its exposition type.
    const CONTRACT: &[(&str, &str)] = &[
        ("riftkv_requests_total", "counter"),
        ("riftkv_request_duration_seconds", "histogram"),
        ("riftkv_quorum_failures_total", "counter"),
        ("riftkv_sloppy_writes_total", "counter"),
        ("riftkv_hints_pending", "gauge"),
        ("riftkv_hints_delivered_total", "counter"),
        ("riftkv_read_repairs_total", "counter"),
        ("riftkv_aae_exchanges_total", "counter"),
        ("riftkv_aae_keys_repaired_total", "counter"),
        ("riftkv_siblings", "histogram"),
        ("riftkv_clock_entries", "histogram"),
        ("riftkv_write_identities_total", "counter"),
        ("riftkv_custody_lost_total", "counter"),
        ("riftkv_members", "gauge"),
        ("riftkv_peer_up", "gauge"),
        ("riftkv_partitions_owned", "gauge"),
        ("riftkv_handoffs_pending", "gauge"),
        ("riftkv_rpc_requests_total", "counter"),
        ("riftkv_rpc_duration_seconds", "histogram"),
        ("riftkv_storage_bytes", "gauge"),
        ("riftkv_storage_corrupt_records_total", "counter"),
        ("riftkv_storage_pending_compaction_bytes", "gauge"),
        ("riftkv_storage_running_compactions", "gauge"),
        ("riftkv_storage_block_cache_bytes", "gauge"),
        ("riftkv_storage_blob_garbage_bytes", "gauge"),
        ("riftkv_going_down_sent_total", "counter"),
        ("riftkv_going_down_received_total", "counter"),
        ("riftkv_catching_up", "gauge"),
        ("riftkv_build_info", "gauge"),
    ];

    /// Touches every labelled metric once so it appears in the exposition.
    fn touch(m: &Metrics) {
        m.observe_request("get", "200", Duration::from_millis(3));
        m.observe_rpc("put_replica", "ok", Duration::from_micros(700));
        m.set_peer_up("node2", true);
    }

    #[test]
    fn render_has_every_contract_metric_with_its_type() {
        let m = Metrics::new();
        touch(&m);
        let text = m.render();
        for (name, kind) in CONTRACT {
            let type_line = format!("# TYPE {name} {kind}");
            assert!(
                text.contains(&type_line),
                "missing {type_line:?} in:\n{text}"
            );
            let help_line = format!("# HELP {name} ");
            assert!(text.contains(&help_line), "missing help for {name}");
        }
    }

    #[test]
    fn process_metrics_are_exported() {
        let text = Metrics::new().render();
        if cfg!(target_os = "linux") {
            assert!(text.contains("process_resident_memory_bytes"), "{text}");
            assert!(text.contains("process_cpu_seconds_total"));
        }
    }

    #[test]
    fn unlabelled_and_preset_series_are_visible_before_use() {
        let text = Metrics::new().render();
        assert!(
            text.contains("riftkv_members{status=\"valid\"} 0"),
            "{text}"
        );
        assert!(text.contains("riftkv_quorum_failures_total{op=\"put\"} 0"));
        assert!(text.contains(&format!(
            "riftkv_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.contains("riftkv_hints_pending 0"));
        assert!(text.contains("riftkv_requests_total{code=\"503\",op=\"put\"} 0"));
        assert!(text.contains("riftkv_requests_total{code=\"500\",op=\"get\"} 0"));
    }

    #[test]
    fn nodes_in_one_process_do_not_share_counters() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.sloppy_writes_total.inc_by(5);
        assert_eq!(a.sloppy_writes_total.get(), 5);
        assert_eq!(b.sloppy_writes_total.get(), 0);
        assert!(a.render().contains("riftkv_sloppy_writes_total 5"));
        assert!(b.render().contains("riftkv_sloppy_writes_total 0"));
    }

    #[test]
    fn histograms_use_the_documented_buckets() {
        let m = Metrics::new();
        m.siblings.observe(2.0);
        m.clock_entries.observe(3.0);
        m.observe_request("put", "204", Duration::from_secs(20));
        let text = m.render();
        assert!(
            text.contains("riftkv_siblings_bucket{le=\"100\"} 1"),
            "{text}"
        );
        assert!(text.contains("riftkv_clock_entries_bucket{le=\"32\"} 1"));
        assert!(
            text.contains("riftkv_request_duration_seconds_bucket{op=\"put\",le=\"0.0005\"} 0")
        );
        assert!(text.contains("riftkv_request_duration_seconds_bucket{op=\"put\",le=\"10\"} 0"));
        assert!(text.contains("riftkv_request_duration_seconds_bucket{op=\"put\",le=\"+Inf\"} 1"));
        assert!(text.contains("riftkv_requests_total{code=\"204\",op=\"put\"} 1"));
    }

    #[test]
    fn members_and_peers_update() {
        let m = Metrics::new();
        m.set_members(&[("valid", 3), ("joining", 1)]);
        assert_eq!(m.members.with_label_values(&["valid"]).get(), 3);
        assert_eq!(m.members.with_label_values(&["leaving"]).get(), 0);
        m.set_members(&[("valid", 2)]);
        assert_eq!(m.members.with_label_values(&["joining"]).get(), 0);
        m.set_peer_up("node3", false);
        assert!(m.render().contains("riftkv_peer_up{peer=\"node3\"} 0"));
        m.forget_peer("node3");
        assert!(!m.render().contains("node3"));
    }
}
