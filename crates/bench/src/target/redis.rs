//! Redis over plain TCP with the hand-written RESP2 of [`super::resp`], a pool of
//! connections (one per concurrent operation at most).
//!
//! - read: `GET`; a null answer is `not_found`.
//! - update: `SET`.
//! - insert: `SET`, then `ZADD` of the key (score 0) to the sorted set [`INDEX`]: Redis has
//!   no ordered key listing, so the bench keeps an index, as YCSB's Redis binding does.
//! - scan: `ZRANGEBYLEX` of the index from the start key with `LIMIT 0 LEN`, then `MGET` of
//!   those keys: values included, two round trips.
//! - read-modify-write: `GET`, then `SET`, without `WATCH`: a plain read then write (Redis
//!   runs commands one at a time, but another client may write in between).

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::resp::{self, Value};
use super::{ErrorKind, OpError, Target, TargetOptions};

/// The sorted set indexing the bench's keys, for scans.
pub const INDEX: &str = "riftkv-bench:index";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection and its read buffer.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    async fn open(addr: &str) -> Result<Conn, OpError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| OpError::new(ErrorKind::Timeout, format!("connecting to {addr}")))?
            .map_err(|e| OpError::new(ErrorKind::Connection, format!("{addr}: {e}")))?;
        // Small requests: send at once.
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
        })
    }

    /// Sends commands in one write (a pipeline) and reads one answer per command.
    async fn pipeline(&mut self, commands: &[Vec<&[u8]>]) -> Result<Vec<Value>, OpError> {
        let mut out = BytesMut::new();
        for c in commands {
            resp::encode_command(c, &mut out);
        }
        let io = |e: std::io::Error| OpError::new(ErrorKind::Connection, e.to_string());
        self.stream.write_all(&out).await.map_err(io)?;
        let mut answers = Vec::with_capacity(commands.len());
        while answers.len() < commands.len() {
            match resp::parse(&self.buf)
                .map_err(|e| OpError::new(ErrorKind::Protocol, e.to_string()))?
            {
                Some((v, used)) => {
                    let _ = self.buf.split_to(used);
                    answers.push(v);
                }
                None => {
                    if self.buf.capacity() - self.buf.len() < 4096 {
                        self.buf.reserve(16 * 1024);
                    }
                    let n = self.stream.read_buf(&mut self.buf).await.map_err(io)?;
                    if n == 0 {
                        return Err(OpError::new(
                            ErrorKind::Connection,
                            "the server closed the connection",
                        ));
                    }
                }
            }
        }
        Ok(answers)
    }
}

/// The Redis target.
#[derive(Debug)]
pub struct Redis {
    addr: String,
    idle: Mutex<Vec<Conn>>,
    max_idle: usize,
}

/// An answer that is an error reply becomes an error.
fn reply(v: Value) -> Result<Value, OpError> {
    match v {
        Value::Error(e) => Err(OpError::new(ErrorKind::Refused, e)),
        other => Ok(other),
    }
}

impl Redis {
    pub fn new(addr: &str, opts: &TargetOptions) -> Redis {
        Redis {
            addr: addr.to_string(),
            idle: Mutex::new(Vec::new()),
            max_idle: opts.connections.max(1),
        }
    }

    fn take_idle(&self) -> Option<Conn> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
    }

    fn give_back(&self, c: Conn) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(c);
        }
    }

    /// Runs a pipeline on a pooled connection; a connection that failed is dropped.
    async fn run(&self, commands: &[Vec<&[u8]>]) -> Result<Vec<Value>, OpError> {
        let mut conn = match self.take_idle() {
            Some(c) => c,
            None => Conn::open(&self.addr).await?,
        };
        let answers = tokio::time::timeout(REQUEST_TIMEOUT, conn.pipeline(commands))
            .await
            .map_err(|_| OpError::new(ErrorKind::Timeout, "no answer in time"))??;
        self.give_back(conn);
        answers.into_iter().map(reply).collect()
    }

    async fn one(&self, command: Vec<&[u8]>) -> Result<Value, OpError> {
        let mut answers = self.run(&[command]).await?;
        answers
            .pop()
            .ok_or_else(|| OpError::new(ErrorKind::Protocol, "no answer"))
    }

    async fn get(&self, key: &str) -> Result<(), OpError> {
        match self.one(vec![b"GET", key.as_bytes()]).await? {
            Value::Bulk(Some(_)) => Ok(()),
            Value::Bulk(None) => Err(OpError::new(
                ErrorKind::NotFound,
                format!("{key} not found"),
            )),
            other => Err(unexpected("GET", &other)),
        }
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), OpError> {
        self.one(vec![b"SET", key.as_bytes(), value])
            .await
            .map(drop)
    }
}

fn unexpected(cmd: &str, v: &Value) -> OpError {
    OpError::new(ErrorKind::Protocol, format!("{cmd} answered {v:?}"))
}

#[async_trait]
impl Target for Redis {
    async fn read(&self, key: &str) -> Result<(), OpError> {
        self.get(key).await
    }

    async fn update(&self, key: &str, value: Bytes) -> Result<(), OpError> {
        self.set(key, &value).await
    }

    async fn insert(&self, key: &str, value: Bytes) -> Result<(), OpError> {
        let k = key.as_bytes();
        self.run(&[
            vec![b"SET", k, &value],
            vec![b"ZADD", INDEX.as_bytes(), b"0", k],
        ])
        .await
        .map(drop)
    }

    async fn scan(&self, start: &str, len: usize) -> Result<usize, OpError> {
        let from = format!("[{start}");
        let count = len.to_string();
        let keys = match self
            .one(vec![
                b"ZRANGEBYLEX",
                INDEX.as_bytes(),
                from.as_bytes(),
                b"+",
                b"LIMIT",
                b"0",
                count.as_bytes(),
            ])
            .await?
        {
            Value::Array(Some(keys)) => keys,
            other => return Err(unexpected("ZRANGEBYLEX", &other)),
        };
        let mut names = Vec::with_capacity(keys.len());
        for k in &keys {
            match k {
                Value::Bulk(Some(b)) => names.push(b.clone()),
                other => return Err(unexpected("ZRANGEBYLEX", other)),
            }
        }
        if names.is_empty() {
            return Ok(0);
        }
        let mut mget: Vec<&[u8]> = vec![b"MGET"];
        mget.extend(names.iter().map(|b| &b[..]));
        match self.one(mget).await? {
            Value::Array(Some(values)) => Ok(values.len()),
            other => Err(unexpected("MGET", &other)),
        }
    }

    async fn read_modify_write(&self, key: &str, value: Bytes) -> Result<(), OpError> {
        match self.get(key).await {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.set(key, &value).await
    }

    async fn check(&self) -> Result<(), OpError> {
        match self.one(vec![b"PING"]).await? {
            Value::Simple(s) if s == "PONG" => Ok(()),
            other => Err(unexpected("PING", &other)),
        }
    }
}
