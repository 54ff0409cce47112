//! Settings shared by both transports.

use std::time::Duration;

use crate::error::{Error, Stage, TransportError};
use crate::request::{Endpoint, parse_base};
use crate::{Client, blocking};

/// How long a request may take when it sets no `timeout` of its own.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Extra time given to the server to answer its own `timeout` before the client gives up.
pub const DEFAULT_TIMEOUT_GRACE: Duration = Duration::from_secs(2);

/// Configures a [`Client`] or a [`blocking::Client`] bound to one node.
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    base: String,
    timeout: Duration,
    connect_timeout: Duration,
    grace: Duration,
    pool_max_idle_per_host: Option<usize>,
    user_agent: String,
    /// CA certificates (PEM) an https:// node must chain to; none trusted without them.
    ca_pem: Option<Vec<u8>>,
    token: Option<Token>,
}

/// A bearer token that never shows in `Debug` output.
#[derive(Clone)]
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl ClientBuilder {
    /// `base` is the node's API URL, `http://HOST:PORT` (a path prefix is kept).
    pub fn new(base: &str) -> ClientBuilder {
        ClientBuilder {
            base: base.to_string(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            grace: DEFAULT_TIMEOUT_GRACE,
            pool_max_idle_per_host: None,
            user_agent: concat!("riftkv-client/", env!("CARGO_PKG_VERSION")).to_string(),
            ca_pem: None,
            token: None,
        }
    }

    /// Sends `Authorization: Bearer TOKEN` with every request (a node with `--auth on`).
    pub fn token(mut self, token: impl Into<String>) -> ClientBuilder {
        self.token = Some(Token(token.into()));
        self
    }

    /// The headers every request carries: the bearer token, marked sensitive.
    fn default_headers(&self) -> Result<reqwest::header::HeaderMap, Error> {
        let mut h = reqwest::header::HeaderMap::new();
        if let Some(Token(t)) = &self.token {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", t.trim()))
                .map_err(|_| {
                    Error::InvalidRequest("the token is not a valid header value".into())
                })?;
            v.set_sensitive(true);
            h.insert(reqwest::header::AUTHORIZATION, v);
        }
        Ok(h)
    }

    /// The wait of a request that sets no `timeout` option.
    pub fn timeout(mut self, t: Duration) -> ClientBuilder {
        self.timeout = t;
        self
    }

    pub fn connect_timeout(mut self, t: Duration) -> ClientBuilder {
        self.connect_timeout = t;
        self
    }

    /// Added to a request's `timeout` option for the client's own wait.
    pub fn timeout_grace(mut self, t: Duration) -> ClientBuilder {
        self.grace = t;
        self
    }

    pub fn pool_max_idle_per_host(mut self, n: usize) -> ClientBuilder {
        self.pool_max_idle_per_host = Some(n);
        self
    }

    pub fn user_agent(mut self, ua: impl Into<String>) -> ClientBuilder {
        self.user_agent = ua.into();
        self
    }

    /// Trusts the CA certificates in `pem` (one or more PEM blocks) for an https:// node. No
    /// other authority is trusted: RiftKV nodes carry certificates of the cluster's own CA.
    pub fn ca_pem(mut self, pem: Vec<u8>) -> ClientBuilder {
        self.ca_pem = Some(pem);
        self
    }

    /// The CA certificates to trust, parsed.
    fn roots(&self) -> Result<Vec<reqwest::Certificate>, Error> {
        let Some(pem) = &self.ca_pem else {
            return Ok(Vec::new());
        };
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| self.setup_error(&e))?;
        if certs.is_empty() {
            return Err(Error::InvalidRequest(
                "the CA file holds no PEM certificate".to_string(),
            ));
        }
        Ok(certs)
    }

    fn endpoint(&self) -> Result<Endpoint, Error> {
        Ok(Endpoint::new(parse_base(&self.base)?, self.grace))
    }

    fn setup_error(&self, e: &reqwest::Error) -> Error {
        TransportError::from_reqwest(e, Stage::Setup, &self.base, None).into_error()
    }

    /// The async client.
    pub fn build(self) -> Result<Client, Error> {
        let endpoint = self.endpoint()?;
        let mut b = reqwest::Client::builder()
            .default_headers(self.default_headers()?)
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(self.user_agent.clone());
        for root in self.roots()? {
            b = b.add_root_certificate(root);
        }
        if let Some(n) = self.pool_max_idle_per_host {
            b = b.pool_max_idle_per_host(n);
        }
        let http = b.build().map_err(|e| self.setup_error(&e))?;
        Ok(Client::from_parts(http, endpoint))
    }

    /// The blocking client. Build it outside of an async runtime.
    pub fn build_blocking(self) -> Result<blocking::Client, Error> {
        let endpoint = self.endpoint()?;
        let mut b = reqwest::blocking::Client::builder()
            .default_headers(self.default_headers()?)
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(self.user_agent.clone());
        for root in self.roots()? {
            b = b.add_root_certificate(root);
        }
        if let Some(n) = self.pool_max_idle_per_host {
            b = b.pool_max_idle_per_host(n);
        }
        let http = b.build().map_err(|e| self.setup_error(&e))?;
        Ok(blocking::Client::from_parts(http, endpoint))
    }
}

// The blocking client's constructors live beside the builder they use, so the transport
// module does not name the builder that names it.
impl blocking::Client {
    /// A client of the node at `base` with the default settings.
    pub fn new(base: &str) -> Result<blocking::Client, Error> {
        ClientBuilder::new(base).build_blocking()
    }

    pub fn builder(base: &str) -> ClientBuilder {
        ClientBuilder::new(base)
    }
}
