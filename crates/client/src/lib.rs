//! The typed HTTP client of RiftKV's REST API (CONTRACT §2).
//!
//! Requests are built ([`request`]) and answers decoded ([`response`]) by plain functions with
//! no connection in sight; two thin transports send them: the async [`Client`] (for load
//! generators and async code) and [`blocking::Client`] (for the CLI and test harnesses).
//!
//! ```no_run
//! # async fn demo() -> Result<(), riftkv_client::Error> {
//! use riftkv_client::{Client, Options, Quorum};
//! let node = Client::new("http://127.0.0.1:8701")?;
//! let read = node.get("carts", "user/1", &Options::new().r(Quorum::Quorum)).await?;
//! let ctx = read.context.clone().unwrap_or_default();
//! node.put("carts", "user/1", "[]", &Options::new().context(ctx)).await?;
//! # Ok(()) }
//! ```

pub mod blocking;
mod builder;
mod client;
pub mod error;
pub mod request;
pub mod response;

pub use builder::ClientBuilder;
pub use client::Client;
pub use error::{Error, ServerError, Stage, TransportError};
pub use request::{
    CONTEXT_HEADER, Endpoint, MAX_BUCKET_BYTES, MAX_KEY_BYTES, Options, Request, encode_segment,
};
pub use reqwest::Method;
pub use reqwest::header;
pub use response::{KeyPage, Object, Preflist, RawResponse, Sibling, TypeValue, WriteResult};
pub use riftkv_types::{NodeId, Quorum};
