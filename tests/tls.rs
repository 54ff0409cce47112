//! TLS with real `riftkv server` processes: the API over HTTPS, peers over mutual TLS, a
//! stranger whose certificate comes from another CA never becomes a member, and certificates
//! rotated on disk take effect on SIGHUP without a restart.

mod common;

use common::{BIN, Cluster, ClusterOpts, tail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A certificate authority of the test.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("ca");
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `ip`, written as `<name>.crt` and `<name>.key` in `dir`.
    fn issue(&self, dir: &Path, name: &str, ip: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec![ip.to_string()]).expect("params");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("cert");
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }
}

fn tls_args(cert: &Path, key: &Path, ca: &Path) -> Vec<String> {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    vec![
        "--tls-cert".into(),
        s(cert),
        "--tls-key".into(),
        s(key),
        "--tls-ca".into(),
        s(ca),
    ]
}

/// An HTTPS client trusting exactly the CA certificates in `pem`.
fn https(pem: &str) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5));
    for c in reqwest::Certificate::from_pem_bundle(pem.as_bytes()).expect("ca pem") {
        b = b.add_root_certificate(c);
    }
    b.build().expect("client")
}

fn status(http: &reqwest::blocking::Client, api: &str) -> Option<Value> {
    http.get(format!("https://{api}/v1/admin/status"))
        .send()
        .ok()?
        .json()
        .ok()
}

fn wait_members(http: &reqwest::blocking::Client, c: &Cluster, nodes: &[usize], members: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let settled = nodes.iter().all(|i| {
            status(http, &c.servers[i - 1].api).is_some_and(|st| {
                st["ring_settled"] == Value::Bool(true)
                    && st["members"].as_array().map(Vec::len) == Some(members)
            })
        });
        if settled {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = c.servers.iter().map(|s| tail(&s.log(), 20)).collect();
            panic!("the TLS cluster did not settle: {}", logs.join("\n---\n"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_tls_cluster_serves_https_refuses_strangers_and_rotates_certificates_on_sighup() {
    let pki = tempfile::tempdir().expect("tempdir");
    let (ca1, ca2) = (Ca::new(), Ca::new());
    // Nodes trust both CAs, so a node may move to a certificate of the second one.
    let trusted = pki.path().join("trusted.pem");
    std::fs::write(&trusted, format!("{}{}", ca1.pem(), ca2.pem())).expect("bundle");
    let ca1_file = pki.path().join("ca1.pem");
    std::fs::write(&ca1_file, ca1.pem()).expect("ca1");

    let mut opts = ClusterOpts::default();
    let base_args = opts.extra_args.len();
    let ip = common::unique_loopback();
    // Every node of the cluster listens on `ip`: one certificate per node, all for it.
    let mut c = {
        let (cert, key) = ca1.issue(pki.path(), "node1", &ip);
        opts.extra_args.extend(tls_args(&cert, &key, &trusted));
        Cluster::start_on(&ip, 1, opts)
    };
    let (cert2, key2) = ca1.issue(pki.path(), "node2", &ip);
    c.opts.extra_args.truncate(base_args);
    c.opts.extra_args.extend(tls_args(&cert2, &key2, &trusted));
    c.add_server();
    let http1 = https(&ca1.pem());
    wait_members(&http1, &c, &[1, 2], 2);

    // The API over HTTPS; the write reaches both nodes over mutual TLS.
    let api1 = c.servers[0].api.clone();
    let api2 = c.servers[1].api.clone();
    let r = http1
        .put(format!("https://{api1}/v1/kv/tls/k?w=2"))
        .body("secret value")
        .send()
        .expect("https put");
    assert_eq!(r.status(), 204);
    let r = http1
        .get(format!("https://{api2}/v1/kv/tls/k?r=2"))
        .send()
        .expect("https get");
    assert_eq!(r.text().expect("body"), "secret value");

    // A client without the CA fails, and says why; with --ca it works.
    let url = format!("https://{api1}");
    let out = std::process::Command::new(BIN)
        .args(["get", "tls", "k", "--url", &url])
        .env_remove("RIFTKV_CA")
        .output()
        .expect("riftkv get");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("certificate") || err.contains("tls"), "{err}");
    let out = std::process::Command::new(BIN)
        .args(["get", "tls", "k", "--url", &url, "--ca"])
        .arg(&ca1_file)
        .output()
        .expect("riftkv get --ca");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .ends_with("secret value")
    );
    // Plain HTTP to the HTTPS port gets no answer.
    assert!(
        common::client()
            .get(format!("http://{api1}/health"))
            .send()
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
    );

    // A stranger: its certificate comes from another CA (it trusts the cluster's CA itself).
    let stranger_ca = Ca::new();
    let (cert3, key3) = stranger_ca.issue(pki.path(), "node3", &ip);
    c.opts.extra_args.truncate(base_args);
    c.opts.extra_args.extend(tls_args(&cert3, &key3, &trusted));
    c.add_server();
    std::thread::sleep(Duration::from_secs(5));
    for i in [1, 2] {
        let st = status(&http1, &c.servers[i - 1].api).expect("status");
        assert_eq!(
            st["members"].as_array().map(Vec::len),
            Some(2),
            "node {i} let the stranger in: {st}"
        );
    }
    assert!(
        c.servers[0].log().contains("TLS handshake"),
        "the refusal is logged: {}",
        tail(&c.servers[0].log(), 20)
    );
    c.node(3).kill();

    // Rotation: node 1's files now hold a certificate of the second CA. A client that trusts
    // only that CA fails until SIGHUP, then succeeds, from the same process.
    let http2 = https(&ca2.pem());
    assert!(
        status(&http2, &api1).is_none(),
        "the new CA is not in use yet"
    );
    let pid = c.node(1).child.as_ref().expect("running").id();
    let (new_cert, new_key) = ca2.issue(pki.path(), "node1-next", &ip);
    std::fs::copy(&new_cert, pki.path().join("node1.crt")).expect("rotate cert");
    std::fs::copy(&new_key, pki.path().join("node1.key")).expect("rotate key");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("sighup");
    common::eventually(Duration::from_secs(10), "the rotated certificate", || {
        status(&http2, &api1).is_some()
    });
    assert!(c.node(1).is_running(), "no restart");
    assert_eq!(c.node(1).child.as_ref().map(|ch| ch.id()), Some(pid));
    assert!(c.node(1).log().contains("TLS certificates reloaded"));
    // The cluster still works across the rotation.
    let r = http1
        .put(format!("https://{api2}/v1/kv/tls/k2?w=2"))
        .body("after rotation")
        .send()
        .expect("put after rotation");
    assert_eq!(r.status(), 204);
    let r = http2
        .get(format!("https://{api1}/v1/kv/tls/k2?r=2"))
        .send()
        .expect("get after rotation");
    assert_eq!(r.text().expect("body"), "after rotation");
}

#[test]
fn half_a_tls_configuration_or_unreadable_files_stop_the_node_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let d = data.to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", d.as_str()]);
        common::server_exit(&all)
    };
    let (code, err) = run(&["--tls-cert", "/nonexistent/a.crt"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--tls-ca"), "{err}");
    let (code, err) = run(&[
        "--tls-cert",
        "/nonexistent/a.crt",
        "--tls-key",
        "/nonexistent/a.key",
        "--tls-ca",
        "/nonexistent/ca.crt",
    ]);
    assert_ne!(code, Some(0), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("a.crt")).collect();
    assert_eq!(lines.len(), 1, "{err}");
}
