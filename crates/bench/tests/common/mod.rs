//! Helpers shared by the integration tests of `riftkv-bench`.

use tokio::net::TcpListener;

/// A listener on a free port of 127.0.0.1, and its `HOST:PORT`.
pub async fn loopback() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind 127.0.0.1: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local address: {e}"))
        .to_string();
    (listener, addr)
}
