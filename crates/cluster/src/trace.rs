//! Request-id tracing: which client request a task works for, carried across spawned tasks
//! and, through [`crate::rpc::RequestMeta`], across nodes. Imports nothing of the cluster.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// A request (client or peer) slower than this is logged at info level with its id.
pub const SLOW_REQUEST: Duration = Duration::from_millis(500);

tokio::task_local! {
    /// Id of the client request the current task works for.
    static REQUEST_ID: Arc<str>;
}

/// Runs `fut` as work for the client request `id`: its inter-node calls carry the id.
pub async fn with_request_id<F: Future>(id: Arc<str>, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

/// Id of the client request the current task works for, if any.
pub fn current_request_id() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}

/// Wraps work about to be spawned for a client request so the new task keeps the request's
/// tracing span and id (spawned tasks inherit neither by themselves).
pub fn traced<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    let span = tracing::Span::current();
    let id = current_request_id();
    async move {
        match id {
            Some(id) => REQUEST_ID.scope(id, fut).await,
            None => fut.await,
        }
    }
    .instrument(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spawned_work_keeps_the_request_id() {
        assert_eq!(current_request_id(), None);
        let seen = with_request_id(Arc::from("abc"), async {
            tokio::spawn(traced(async { current_request_id() }))
                .await
                .unwrap()
        })
        .await;
        assert_eq!(seen.as_deref(), Some("abc"));
        let untraced = with_request_id(Arc::from("abc"), async {
            tokio::spawn(async { current_request_id() }).await.unwrap()
        })
        .await;
        assert_eq!(untraced, None);
    }
}
