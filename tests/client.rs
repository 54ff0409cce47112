//! `riftkv-client` against real `riftkv server` processes: the blocking and the async client
//! on one 3-node cluster.

mod common;

use common::*;
use riftkv_client::{Client, Error, KeyPage, Object, Options, Quorum, blocking};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

fn values(o: &Object) -> BTreeSet<Vec<u8>> {
    o.live().map(|s| s.value.clone()).collect()
}

fn set(vals: &[&str]) -> BTreeSet<Vec<u8>> {
    vals.iter().map(|v| v.as_bytes().to_vec()).collect()
}

/// Every key of a bucket, page by page; also checks no page is longer than `limit`.
fn all_keys(c: &blocking::Client, bucket: &str, limit: u32) -> (Vec<String>, usize) {
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let KeyPage { keys: page, next } = c
            .list_keys(bucket, Some(limit), after.as_deref())
            .expect("list keys");
        assert!(page.len() <= limit as usize, "{page:?}");
        pages += 1;
        keys.extend(page);
        match next {
            Some(n) => after = Some(n),
            None => return (keys, pages),
        }
        assert!(pages < 100, "listing does not end");
    }
}

fn blocking_client_round_trips(c: &blocking::Client) {
    let text = Options::new().content_type("text/plain");

    // Put, read back, and write again with the read's context: one version remains.
    let w = c.put("kv", "user/1", "v1", &text).expect("put");
    assert!(w.context.is_some());
    assert!(w.object.is_none());
    let o = c.get("kv", "user/1", &Options::new()).expect("get");
    assert_eq!(values(&o), set(&["v1"]));
    let one = &o.siblings[0];
    assert_eq!(one.content_type.as_deref(), Some("text/plain"));
    assert!(one.etag.is_some() && one.last_modified.is_some() && !one.deleted);
    let ctx = o.context.clone().expect("context");
    let w = c
        .put(
            "kv",
            "user/1",
            "v2",
            &text.clone().context(ctx).returnbody(),
        )
        .expect("put with context");
    let echoed = w.object.expect("returnbody echoes the object");
    assert_eq!(values(&echoed), set(&["v2"]));
    let o = c
        .get("kv", "user/1", &Options::new().r(Quorum::All))
        .expect("get");
    assert_eq!(values(&o), set(&["v2"]));
    assert_eq!(o.siblings.len(), 1);

    // Two writes without a context are concurrent: siblings, until a write with the context.
    c.put("kv", "pair", "a", &text).expect("put a");
    c.put("kv", "pair", "b", &text).expect("put b");
    let o = c
        .get("kv", "pair", &Options::new().r(Quorum::All))
        .expect("get");
    assert_eq!(values(&o), set(&["a", "b"]));
    assert_eq!(o.siblings.len(), 2);
    let ctx = o.context.clone().expect("context");
    c.put("kv", "pair", "ab", &text.clone().context(ctx))
        .expect("resolve");
    let o = c.get("kv", "pair", &Options::new()).expect("get");
    assert_eq!(values(&o), set(&["ab"]));

    // Delete with the context: nothing live, and the 404 carries the tombstone's context.
    let ctx = o.context.clone().expect("context");
    c.delete("kv", "pair", &Options::new().context(ctx))
        .expect("delete");
    match c.get("kv", "pair", &Options::new().r(Quorum::All)) {
        Err(Error::NotFound { context, response }) => {
            assert!(context.is_some(), "a tombstone's context");
            assert_eq!(response.status, 404);
        }
        other => panic!("expected not found, got {other:?}"),
    }
    match c.get("kv", "never-written", &Options::new()) {
        Err(Error::NotFound { .. }) => {}
        other => panic!("expected not found, got {other:?}"),
    }

    // If-None-Match: the first write wins, the second is a 412.
    let once = text.clone().if_none_match();
    c.put("kv", "once", "first", &once).expect("first write");
    match c.put("kv", "once", "second", &once) {
        Err(Error::PreconditionFailed(e)) => {
            assert_eq!(e.status, 412);
            assert_eq!(e.code.as_deref(), Some("precondition_failed"));
        }
        other => panic!("expected 412, got {other:?}"),
    }
    let o = c.get("kv", "once", &Options::new()).expect("get");
    assert_eq!(values(&o), set(&["first"]));

    // A bad parameter is the server's 400 with its code.
    match c.get("kv", "once", &Options::new().r(Quorum::Count(9))) {
        Err(Error::BadRequest(e)) => assert_eq!(e.code.as_deref(), Some("bad_request")),
        other => panic!("expected 400, got {other:?}"),
    }

    // Listing, page by page, in byte order.
    let names: Vec<String> = (0..7).map(|i| format!("key-{i}")).collect();
    for k in &names {
        c.put("pages", k, "x", &Options::new().w(Quorum::All))
            .expect("put");
    }
    let (keys, pages) = all_keys(c, "pages", 3);
    assert_eq!(keys, names);
    assert!(pages >= 3, "{pages} pages");

    // Bucket props round trip.
    c.set_bucket_props("props", &json!({"r": "one", "w": "all", "dw": 1}))
        .expect("set props");
    let p = c.bucket_props("props").expect("props");
    assert_eq!(p["r"], "one", "{p}");
    assert_eq!(p["w"], "all", "{p}");
    assert_eq!(p["dw"], 1, "{p}");
    assert_eq!(p["conflict"], "siblings", "{p}");

    // Admin views.
    let s = c.status().expect("status");
    assert_eq!(s["members"].as_array().map(Vec::len), Some(3));
    let r = c.ring().expect("ring");
    assert_eq!(r["ring_size"], 32);
    let p = c.preflist("kv", "user/1").expect("preflist");
    assert_eq!(p.primaries.len(), 3);
    let local = c.local("kv", "user/1").expect("local copy");
    assert!(local["siblings"].is_array(), "{local}");
}

async fn async_client_round_trips(c: &Client, other: &Client) {
    let text = Options::new().content_type("text/plain");
    let w = c.put("async", "k", "v1", &text).await.expect("put");
    let o = other.get("async", "k", &Options::new()).await.expect("get");
    assert_eq!(values(&o), set(&["v1"]));
    assert_eq!(o.context.is_some(), w.context.is_some());

    // Two concurrent writes without a context, in flight at once, through two nodes.
    let (a, b) = tokio::join!(
        c.put("async", "k2", "a", &text),
        other.put("async", "k2", "b", &text)
    );
    a.expect("put a");
    b.expect("put b");
    let o = c
        .get("async", "k2", &Options::new().r(Quorum::All))
        .await
        .expect("get");
    assert_eq!(values(&o), set(&["a", "b"]));
    let ctx = o.context.clone().expect("context");
    other
        .put("async", "k2", "ab", &text.clone().context(ctx))
        .await
        .expect("resolve");
    let o = c
        .get("async", "k2", &Options::new().r(Quorum::All))
        .await
        .expect("get");
    assert_eq!(values(&o), set(&["ab"]));

    // Many requests in flight on one client.
    let plain = Options::new();
    let gets: Vec<_> = (0..16).map(|_| c.get("async", "k2", &plain)).collect();
    for r in futures::future::join_all(gets).await {
        assert_eq!(values(&r.expect("get")), set(&["ab"]));
    }

    let ctx = o.context.clone().expect("context");
    c.delete("async", "k2", &Options::new().context(ctx))
        .await
        .expect("delete");
    assert!(matches!(
        c.get("async", "k2", &Options::new().r(Quorum::All)).await,
        Err(Error::NotFound { .. })
    ));

    let once = text.clone().if_none_match();
    assert!(matches!(
        c.put("async", "k", "again", &once).await,
        Err(Error::PreconditionFailed(_))
    ));

    let page = c.list_keys("async", Some(1), None).await.expect("list");
    assert_eq!(page.keys, ["k"]);

    c.set_bucket_props("async-props", &json!({"conflict": "lww"}))
        .await
        .expect("set props");
    let p = c.bucket_props("async-props").await.expect("props");
    assert_eq!(p["conflict"], "lww", "{p}");
    let s = c.status().await.expect("status");
    assert_eq!(s["ring_size"], 32);
}

#[test]
fn blocking_and_async_clients_against_a_three_node_cluster() {
    let mut c = Cluster::start(3, ClusterOpts::default());
    c.wait_settled(3, Duration::from_secs(60));

    let b = blocking::Client::new(&c.url(1)).expect("blocking client");
    blocking_client_round_trips(&b);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (a1, a2) = rt.block_on(async {
        let a1 = Client::new(&c.url(2)).expect("async client");
        let a2 = a1.at(&c.url(3)).expect("async client of node 3");
        async_client_round_trips(&a1, &a2).await;
        (a1, a2)
    });
    drop(a2);

    // One node down: every key's three primaries are no longer all there.
    let down = c.servers[2].id.clone();
    c.node(3).terminate();
    wait_unreachable(&c, 1, std::slice::from_ref(&down));
    wait_unreachable(&c, 2, std::slice::from_ref(&down));
    match b.get("kv", "user/1", &Options::new().pr(Quorum::Count(3))) {
        Err(Error::Unavailable {
            needed: Some(3),
            got: Some(2),
            response,
        }) => assert_eq!(response.code.as_deref(), Some("quorum_unavailable")),
        other => panic!("expected 503 with needed 3, got 2: {other:?}"),
    }
    let r = rt.block_on(a1.put("kv", "user/1", "v3", &Options::new().pw(Quorum::All)));
    match r {
        Err(e @ Error::Unavailable { .. }) => {
            assert_eq!(e.status(), Some(503));
            assert!(matches!(
                e,
                Error::Unavailable {
                    needed: Some(3),
                    got: Some(2),
                    ..
                }
            ));
        }
        other => panic!("expected 503, got {other:?}"),
    }
    // The stopped node itself cannot be reached at all.
    let gone = b.at(&c.url(3)).expect("client of node 3");
    let e = gone.status().expect_err("node 3 is down");
    assert!(e.is_connect(), "{e:?}");
    assert!(e.to_string().starts_with("cannot connect to "), "{e}");
}
