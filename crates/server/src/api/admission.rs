//! Admission of API requests: what keeps a node's memory and tasks bounded under overload or
//! against a slow client.
//! - At most `max_in_flight` requests are handled at once; past it the answer is
//!   `503 overloaded` with `Retry-After`, at once and without reading the body. `/health`,
//!   `/ready` and `/metrics` are always answered, so probes and scrapes see an overloaded node
//!   as alive and can tell why it refuses.
//! - A request's body must arrive within `body_timeout` in total (not per chunk, so a client
//!   dribbling a byte at a time is cut off too): past it the request ends with `timeout`.

use super::error::{ApiError, Code};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Semaphore;

/// The admission state of one node's API.
#[derive(Debug)]
pub struct Admission {
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    body_timeout: Duration,
}

impl Admission {
    pub fn new(max_in_flight: usize, body_timeout: Duration) -> Arc<Admission> {
        Arc::new(Admission {
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            body_timeout,
        })
    }

    /// Requests being handled now.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.in_flight.available_permits()
    }
}

/// Paths answered whatever the load: cheap, and what operators need most when it is high.
fn always_admitted(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics")
}

/// The middleware: admits the request or answers `503 overloaded`.
pub async fn admit(State(adm): State<Arc<Admission>>, req: Request, next: Next) -> Response {
    if always_admitted(req.uri().path()) {
        return next.run(req).await;
    }
    let Ok(permit) = adm.in_flight.clone().try_acquire_owned() else {
        return ApiError::new(
            Code::Overloaded,
            format!(
                "this node is already handling {} requests, its bound; retry shortly",
                adm.max_in_flight
            ),
        )
        .into_response();
    };
    // A request without a body (most reads) has nothing to wait for: no timer for it.
    let timeout = adm.body_timeout;
    let req = req.map(|body| {
        if http_body::Body::is_end_stream(&body) {
            body
        } else {
            Body::new(DeadlineBody::new(body, timeout))
        }
    });
    let response = next.run(req).await;
    drop(permit);
    response
}

/// The error a body past its deadline ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} ms", .0.as_millis())]
pub struct BodyDeadline(pub Duration);

/// The [`BodyDeadline`] behind a body read error, if that is what it is (the body wrappers
/// nest the error, so the whole source chain is searched).
pub fn deadline_of(e: &axum::Error) -> Option<&BodyDeadline> {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(d) = c.downcast_ref::<BodyDeadline>() {
            return Some(d);
        }
        cause = c.source();
    }
    None
}

/// A request body that fails once its total deadline passes.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl DeadlineBody {
    fn new(inner: Body, limit: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(BodyDeadline(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
