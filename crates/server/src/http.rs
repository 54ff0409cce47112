//! The API's HTTP listener. It replaces `axum::serve` to bound what a hostile or broken client
//! can hold: open connections (in total and per IP address, closed at accept when over), and
//! the time to send a request's headers (a slow-loris client is cut off instead of keeping a
//! connection and a task forever). In-flight requests and body deadlines are the API's own
//! admission (`api::admission`). With TLS configured it serves HTTPS only (the TLS handshake
//! shares the header deadline). On stop it stops accepting and lets open requests finish.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use riftkv_core::net::limit::ConnLimiter;
use riftkv_core::net::tls::Tls;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// What the listener bounds.
#[derive(Clone, Debug)]
pub struct ListenerLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Time a client has to send a request's headers (also the idle bound between requests on
    /// a kept-alive connection, and the bound on a TLS handshake).
    pub header_timeout: Duration,
    /// HTTPS with these certificates, re-read on reload.
    pub tls: Option<Arc<Tls>>,
}

/// Least time between two warnings about connections closed at accept.
const REJECT_WARN_EVERY: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `stop` is cancelled, then waits for open requests to end
/// (the caller bounds that wait). Accept errors (e.g. out of descriptors) pause, never stop.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenerLimits,
    stop: CancellationToken,
) {
    let conns = ConnLimiter::new(limits.max_connections, limits.max_connections_per_ip);
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let mut rejected = 0u64;
    let mut last_warn: Option<tokio::time::Instant> = None;
    loop {
        let (stream, from) = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(permit) = conns.try_admit(from.ip()) else {
            drop(stream);
            rejected += 1;
            if last_warn.is_none_or(|t| t.elapsed() >= REJECT_WARN_EVERY) {
                last_warn = Some(tokio::time::Instant::now());
                tracing::warn!(
                    %from,
                    open = conns.open(),
                    rejected_so_far = rejected,
                    "API connection bound reached; closing new connections at accept"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(from));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = limits.tls.as_ref().map(|t| t.api_acceptor());
        let handshake_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_conn(&builder, watcher, stream, service, from).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            serve_conn(&builder, watcher, tls_stream, service, from).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%from, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%from, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Serves one connection (plain or TLS) until it closes or the graceful stop ends it.
async fn serve_conn<I, S, B>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    io: I,
    service: S,
    from: SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<B>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(%from, error = %e, "API connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(
        limits: ListenerLimits,
    ) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/who",
            get(|ConnectInfo(from): ConnectInfo<SocketAddr>| async move { from.ip().to_string() }),
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, app, limits, stop.clone()));
        (addr, stop, task)
    }

    fn limits(per_ip: usize, header_ms: u64) -> ListenerLimits {
        ListenerLimits {
            max_connections: 100,
            max_connections_per_ip: per_ip,
            header_timeout: Duration::from_millis(header_ms),
            tls: None,
        }
    }

    /// Reads until the server closes; `None` if it is still open after `within`.
    async fn read_to_close(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let read = async {
            let mut buf = [0u8; 1024];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
        };
        tokio::time::timeout(within, read).await.ok().map(|()| out)
    }

    async fn get_who(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let out = read_to_close(&mut s, Duration::from_secs(5)).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let (addr, stop, task) = start(limits(10, 300)).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        let answer = read_to_close(&mut slow, Duration::from_secs(5)).await;
        assert!(
            answer.is_some(),
            "the connection must be closed by the header deadline"
        );
        // Others are served meanwhile and after, and see their own address.
        assert!(get_who(addr).await.ends_with("127.0.0.1"));
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn connections_over_the_per_address_bound_are_closed_at_accept() {
        let (addr, stop, task) = start(limits(2, 10_000)).await;
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let out = read_to_close(&mut c, Duration::from_secs(5)).await;
        assert_eq!(out.as_deref(), Some(&b""[..]), "closed without an answer");
        drop(_a);
        // The freed place serves again (the close is seen by the server shortly after).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let out = read_to_close(&mut s, Duration::from_secs(5)).await.unwrap();
            if !out.is_empty() {
                assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the place was never freed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
