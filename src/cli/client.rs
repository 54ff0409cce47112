//! The client subcommands: `put`, `get`, `delete`, `status`, `ring` over the REST API, through
//! the blocking [`riftkv_client`].

use clap::{Args, ValueEnum};
use reqwest::Url;
use riftkv_client::blocking::Client;
use riftkv_client::request::validate_name;
use riftkv_client::{
    ClientBuilder, Error as ClientError, MAX_BUCKET_BYTES, MAX_KEY_BYTES, Object, Options, Quorum,
    Sibling,
};
use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

use super::CliError;
use super::output;

/// Client-side wait when `--timeout` is not given; the server's own timeout answers earlier.
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time given to the server to answer its own timeout before the client gives up.
const TIMEOUT_GRACE: Duration = Duration::from_secs(2);

/// Where the server is and how long to wait for it.
#[derive(Args, Clone, Debug)]
pub struct ConnOpts {
    /// Base URL of any node's REST API
    #[arg(
        long,
        global = true,
        env = "RIFTKV_URL",
        default_value = "http://127.0.0.1:8701",
        value_name = "http(s)://HOST:PORT"
    )]
    pub url: String,

    /// CA certificate(s) (PEM) to verify an https:// node against
    #[arg(long, global = true, env = "RIFTKV_CA", value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,

    /// Request timeout in milliseconds (also sent to the server as `timeout`)
    #[arg(long, global = true, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,

    /// Bearer token for a node with --auth on (prefer the environment: flags are visible to
    /// other local users)
    #[arg(
        long,
        global = true,
        env = "RIFTKV_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

/// Parses `integer|one|quorum|all` (any case) into the one quorum type; `min` is the
/// smallest count allowed.
pub fn parse_quorum(s: &str, min: u32) -> Result<Quorum, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "one" => Ok(Quorum::One),
        "quorum" => Ok(Quorum::Quorum),
        "all" => Ok(Quorum::All),
        other => match other.parse::<u32>() {
            Ok(n) if n >= min => Ok(Quorum::Count(n)),
            Ok(n) => Err(format!("{n} is below the minimum of {min}")),
            Err(_) => Err(format!("'{s}' is not a count or one of: one, quorum, all")),
        },
    }
}

fn quorum_min1(s: &str) -> Result<Quorum, String> {
    parse_quorum(s, 1)
}
fn quorum_min0(s: &str) -> Result<Quorum, String> {
    parse_quorum(s, 0)
}

/// `--r --w --dw --pr --pw`; absent ones take the bucket's defaults on the server.
#[derive(Args, Clone, Debug, Default)]
pub struct QuorumOpts {
    /// Read quorum: replicas that must answer a get (>= 1)
    #[arg(long, value_name = "N|one|quorum|all", value_parser = quorum_min1)]
    pub r: Option<Quorum>,
    /// Write quorum: replicas that must acknowledge a put or delete (>= 1)
    #[arg(long, value_name = "N|one|quorum|all", value_parser = quorum_min1)]
    pub w: Option<Quorum>,
    /// Durable writes: replicas that must have synced the write to disk (>= 0)
    #[arg(long, value_name = "N|one|quorum|all", value_parser = quorum_min0)]
    pub dw: Option<Quorum>,
    /// Primary reads: answers that must come from the key's primary owners (>= 0)
    #[arg(long, value_name = "N|one|quorum|all", value_parser = quorum_min0)]
    pub pr: Option<Quorum>,
    /// Primary writes: acknowledgements that must come from primary owners (>= 0)
    #[arg(long, value_name = "N|one|quorum|all", value_parser = quorum_min0)]
    pub pw: Option<Quorum>,
}

impl QuorumOpts {
    /// Request options of the flags given, with `--timeout`. Every object command sends all
    /// five (CONTRACT §1): the server applies each where it matters — a delete without a
    /// context, for instance, first reads at `r`.
    pub fn options(&self, conn: &ConnOpts) -> Options {
        Options {
            r: self.r,
            pr: self.pr,
            w: self.w,
            dw: self.dw,
            pw: self.pw,
            timeout: conn.timeout.map(Duration::from_millis),
            ..Options::default()
        }
    }
}

/// `riftkv put`.
#[derive(Args, Clone, Debug)]
pub struct PutArgs {
    pub bucket: String,
    pub key: String,
    /// The value; '-' or absent reads it from stdin
    pub value: Option<String>,
    /// Content type stored with the value [server default: application/octet-stream]
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
    /// Causal context from an earlier get: supersede exactly the versions it has seen
    #[arg(long, value_name = "TOKEN")]
    pub context: Option<String>,
    /// Write only if no live value exists (If-None-Match: *)
    #[arg(long)]
    pub if_none_match: bool,
    #[command(flatten)]
    pub conn: ConnOpts,
    #[command(flatten)]
    pub quorum: QuorumOpts,
}

/// How `get` prints what it read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum GetOutput {
    /// Context, then each sibling's metadata and value
    #[default]
    Human,
    /// The JSON envelope: {"context", "siblings": [...]}
    Json,
    /// Only the raw bytes of the value; fails when there are siblings
    Value,
}

/// `riftkv get`.
#[derive(Args, Clone, Debug)]
pub struct GetArgs {
    pub bucket: String,
    pub key: String,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value_t = GetOutput::Human)]
    pub output: GetOutput,
    #[command(flatten)]
    pub conn: ConnOpts,
    #[command(flatten)]
    pub quorum: QuorumOpts,
}

/// `riftkv delete`.
#[derive(Args, Clone, Debug)]
pub struct DeleteArgs {
    pub bucket: String,
    pub key: String,
    /// Causal context from an earlier get: delete exactly the versions it has seen
    #[arg(long, value_name = "TOKEN")]
    pub context: Option<String>,
    #[command(flatten)]
    pub conn: ConnOpts,
    #[command(flatten)]
    pub quorum: QuorumOpts,
}

/// How `status` and `ring` print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum AdminOutput {
    /// Aligned text
    #[default]
    Human,
    /// The server's JSON, pretty-printed
    Json,
}

/// `riftkv status` and `riftkv ring`.
#[derive(Args, Clone, Debug)]
pub struct AdminArgs {
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value_t = AdminOutput::Human)]
    pub output: AdminOutput,
    #[command(flatten)]
    pub conn: ConnOpts,
    /// Accepted like on every client command; cluster views are read from one node, so
    /// they have no effect here.
    #[command(flatten)]
    pub quorum: QuorumOpts,
}

/// Parses `--url`: plain http (this build has no TLS), no query or fragment.
pub fn parse_base_url(s: &str) -> Result<Url, CliError> {
    let url =
        Url::parse(s.trim()).map_err(|e| CliError::Usage(format!("invalid --url '{s}': {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(CliError::Usage(format!(
            "invalid --url '{s}': only http:// and https:// are supported"
        )));
    }
    if url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err(CliError::Usage(format!(
            "invalid --url '{s}': expected http(s)://HOST:PORT"
        )));
    }
    Ok(url)
}

/// A blocking client of the node `--url` names, waiting as long as `--timeout` asks.
pub fn connect(conn: &ConnOpts) -> Result<Client, CliError> {
    let base = parse_base_url(&conn.url)?;
    let wait = conn
        .timeout
        .map(|ms| Duration::from_millis(ms) + TIMEOUT_GRACE)
        .unwrap_or(DEFAULT_HTTP_TIMEOUT);
    let mut builder = ClientBuilder::new(base.as_str())
        .timeout(wait)
        .timeout_grace(TIMEOUT_GRACE)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("riftkv-cli/", env!("CARGO_PKG_VERSION")));
    if let Some(t) = &conn.token {
        builder = builder.token(t.clone());
    }
    if let Some(path) = &conn.ca {
        let pem = std::fs::read(path)
            .map_err(|e| CliError::Usage(format!("cannot read --ca {}: {e}", path.display())))?;
        builder = builder.ca_pem(pem);
    }
    builder.build_blocking().map_err(cli_error)
}

/// The exit-code class of a client failure: a "no" from the server is 1, the rest 2.
pub fn cli_error(e: ClientError) -> CliError {
    match e {
        ClientError::InvalidRequest(m) => CliError::Usage(m),
        ClientError::Timeout(t) | ClientError::Connection(t) => CliError::Connection(t.to_string()),
        ClientError::UnexpectedResponse(m) => CliError::BadResponse(m),
        other => match other.server() {
            Some(s) => CliError::Server {
                status: s.status,
                code: s.code.clone(),
                message: s.detail(),
            },
            None => CliError::BadResponse(other.to_string()),
        },
    }
}

pub fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|_| out.flush())
        .or_else(|e| {
            // A closed pipe (e.g. `| head`) is the reader's choice, not a failure.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(|e| CliError::Connection(format!("cannot write to stdout: {e}")))
}

/// Reads the value to store: the argument, or stdin for '-' or no argument.
fn read_value(arg: Option<&str>) -> Result<Vec<u8>, CliError> {
    match arg {
        Some(v) if v != "-" => Ok(v.as_bytes().to_vec()),
        _ => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("riftkv: reading the value from stdin (end with Ctrl-D)");
            }
            let mut buf = Vec::new();
            stdin
                .lock()
                .read_to_end(&mut buf)
                .map_err(|e| CliError::Usage(format!("cannot read the value from stdin: {e}")))?;
            Ok(buf)
        }
    }
}

/// `riftkv put`.
pub fn put(args: &PutArgs) -> Result<(), CliError> {
    let client = connect(&args.conn)?;
    // Refuse bad names before waiting for a value on stdin.
    validate_name("bucket", &args.bucket, MAX_BUCKET_BYTES).map_err(cli_error)?;
    validate_name("key", &args.key, MAX_KEY_BYTES).map_err(cli_error)?;
    let value = read_value(args.value.as_deref())?;
    let opts = Options {
        content_type: args.content_type.clone(),
        context: args.context.clone(),
        if_none_match: args.if_none_match,
        ..args.quorum.options(&args.conn)
    };
    let written = client
        .put(&args.bucket, &args.key, value, &opts)
        .map_err(cli_error)?;
    if let Some(ctx) = written.context {
        write_stdout(format!("context: {ctx}\n").as_bytes())?;
    }
    Ok(())
}

/// `riftkv get`.
pub fn get(args: &GetArgs) -> Result<(), CliError> {
    let client = connect(&args.conn)?;
    let opts = args.quorum.options(&args.conn);
    match client.get(&args.bucket, &args.key, &opts) {
        Ok(obj) => print_object(&obj, args.output),
        Err(ClientError::NotFound {
            context: Some(ctx),
            response,
        }) => {
            // A tombstone's context lets the next write supersede the delete.
            write_stdout(format!("context: {ctx}\n").as_bytes())?;
            Err(cli_error(ClientError::NotFound {
                context: Some(ctx),
                response,
            }))
        }
        Err(e) => Err(cli_error(e)),
    }
}

/// Prints a read in the chosen format.
fn print_object(view: &Object, format: GetOutput) -> Result<(), CliError> {
    match format {
        GetOutput::Human => write_stdout(output::render_object(view).as_bytes()),
        GetOutput::Json => {
            let mut text = serde_json::to_string_pretty(&view.to_envelope())
                .map_err(|e| CliError::BadResponse(e.to_string()))?;
            text.push('\n');
            write_stdout(text.as_bytes())
        }
        GetOutput::Value => write_stdout(&single_value(view)?.value),
    }
}

/// The one live version, for raw output; siblings must be resolved first.
pub fn single_value(view: &Object) -> Result<&Sibling, CliError> {
    match view.siblings.as_slice() {
        [one] if !one.deleted => Ok(one),
        [_] => Err(CliError::Refused("the only version is a deletion".into())),
        many => Err(CliError::Refused(format!(
            "the key has {} siblings; use --output human or --output json to see them",
            many.len()
        ))),
    }
}

/// `riftkv delete`.
pub fn delete(args: &DeleteArgs) -> Result<(), CliError> {
    let client = connect(&args.conn)?;
    let opts = Options {
        context: args.context.clone(),
        ..args.quorum.options(&args.conn)
    };
    client
        .delete(&args.bucket, &args.key, &opts)
        .map_err(cli_error)
}

pub(crate) fn print_admin(
    v: &serde_json::Value,
    format: AdminOutput,
    human: fn(&serde_json::Value) -> String,
) -> Result<(), CliError> {
    let text = match format {
        AdminOutput::Human => human(v),
        AdminOutput::Json => {
            let mut t = serde_json::to_string_pretty(v)
                .map_err(|e| CliError::BadResponse(e.to_string()))?;
            t.push('\n');
            t
        }
    };
    write_stdout(text.as_bytes())
}

/// `riftkv status`.
pub fn status(args: &AdminArgs) -> Result<(), CliError> {
    let v = connect(&args.conn)?.status().map_err(cli_error)?;
    print_admin(&v, args.output, output::render_status)
}

/// `riftkv ring`.
pub fn ring(args: &AdminArgs) -> Result<(), CliError> {
    let v = connect(&args.conn)?.ring().map_err(cli_error)?;
    print_admin(&v, args.output, output::render_ring)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};
    use riftkv_client::RawResponse;
    use riftkv_client::response::{decode_get, error_of};

    #[test]
    fn bad_base_urls_are_usage_errors() {
        for bad in [
            "127.0.0.1:8701",
            "gopher://x:1",
            "https://x:1/?a=1",
            "http://x/?a=1",
            "not a url",
            "ftp://x",
        ] {
            let e = parse_base_url(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
        assert!(parse_base_url("http://localhost:9000/riftkv/").is_ok());
        assert!(parse_base_url("https://node1.example:8701").is_ok());
    }

    #[test]
    fn names_out_of_bounds_are_usage_errors() {
        let args = |bucket: &str, key: &str| DeleteArgs {
            bucket: bucket.into(),
            key: key.into(),
            context: None,
            conn: ConnOpts {
                url: "http://127.0.0.1:1".into(),
                timeout: None,
                ca: None,
                token: None,
            },
            quorum: QuorumOpts::default(),
        };
        let e = delete(&args("b", &"k".repeat(1025))).unwrap_err();
        assert_eq!(
            e,
            CliError::Usage("key must be 1 to 1024 bytes, got 1025".into())
        );
        assert_eq!(e.exit_code(), 2);
        assert!(matches!(delete(&args("", "k")), Err(CliError::Usage(_))));
        assert!(matches!(delete(&args("b", "..")), Err(CliError::Usage(_))));
    }

    #[test]
    fn quorum_values_parse() {
        assert_eq!(parse_quorum("quorum", 1), Ok(Quorum::Quorum));
        assert_eq!(parse_quorum("ALL", 1), Ok(Quorum::All));
        assert_eq!(parse_quorum("one", 1), Ok(Quorum::One));
        assert_eq!(parse_quorum("3", 1), Ok(Quorum::Count(3)));
        assert_eq!(parse_quorum("0", 0), Ok(Quorum::Count(0)));
        assert!(parse_quorum("0", 1).is_err());
        assert!(parse_quorum("-1", 0).is_err());
        assert!(parse_quorum("most", 0).is_err());
        assert_eq!(
            parse_quorum("0", 1),
            Err("0 is below the minimum of 1".to_string())
        );
        assert_eq!(
            parse_quorum("most", 0),
            Err("'most' is not a count or one of: one, quorum, all".to_string())
        );
        assert_eq!(Quorum::Count(2).to_string(), "2");
        assert_eq!(Quorum::Quorum.to_string(), "quorum");
    }

    #[test]
    fn every_quorum_flag_given_becomes_a_query_parameter() {
        let q = QuorumOpts {
            r: Some(Quorum::Quorum),
            pr: Some(Quorum::Count(1)),
            w: Some(Quorum::All),
            dw: Some(Quorum::Count(0)),
            pw: Some(Quorum::One),
        };
        let conn = ConnOpts {
            url: "http://127.0.0.1:8701".into(),
            timeout: None,
            ca: None,
            token: None,
        };
        assert_eq!(
            q.options(&conn).query(),
            vec![
                ("r", "quorum".to_string()),
                ("pr", "1".to_string()),
                ("w", "all".to_string()),
                ("dw", "0".to_string()),
                ("pw", "one".to_string())
            ]
        );
        assert!(QuorumOpts::default().options(&conn).query().is_empty());
    }

    fn server_error(status: u16, body: &[u8]) -> CliError {
        cli_error(error_of(&RawResponse::new(
            status,
            HeaderMap::new(),
            body.to_vec(),
        )))
    }

    #[test]
    fn server_errors_carry_code_message_and_extras() {
        let e = server_error(
            503,
            br#"{"error":"quorum_unavailable","message":"only 1 of 2 replicas answered","needed":2,"got":1}"#,
        );
        assert_eq!(e.exit_code(), 1);
        let line = e.to_string();
        assert_eq!(
            line,
            "server answered 503 quorum_unavailable: only 1 of 2 replicas answered (got: 1, needed: 2)"
        );
        let e = server_error(404, b"");
        assert_eq!(e.to_string(), "server answered 404: not found");
        let e = server_error(502, b"<html>bad gateway</html>\nmore");
        assert_eq!(
            e.to_string(),
            "server answered 502: <html>bad gateway</html>"
        );
        assert_eq!(e.exit_code(), 1);
        for status in [400, 401, 403, 409, 412, 413, 500] {
            assert_eq!(server_error(status, b"{}").exit_code(), 1, "{status}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn decodes_json_siblings() {
        let body = br#"{"context":"c9","siblings":[
            {"value_base64":"YQ==","content_type":"text/plain","etag":"\"1\"","last_modified":"2024-01-01T00:00:00Z","deleted":false},
            {"value_base64":"Yg==","content_type":"text/plain","etag":"\"2\"","last_modified":"2024-01-01T00:00:01Z","deleted":false}]}"#;
        let h = headers(&[
            ("content-type", "application/json"),
            ("x-riftkv-context", "c9"),
        ]);
        let v = decode_get(&RawResponse::new(300, h, body.to_vec())).unwrap();
        assert_eq!(v.context.as_deref(), Some("c9"));
        assert_eq!(v.siblings.len(), 2);
        assert_eq!(v.siblings[1].value, b"b");
        assert!(matches!(single_value(&v), Err(CliError::Refused(_))));
        let text = output::render_object(&v);
        assert!(text.contains("siblings: 2"));
        assert!(text.contains("etag: \"2\""));
    }

    #[test]
    fn decodes_a_raw_single_value_from_headers() {
        let h = headers(&[
            ("content-type", "text/plain"),
            ("x-riftkv-context", "ctx"),
            ("etag", "\"e\""),
            ("last-modified", "Wed, 01 May 2024 10:00:00 GMT"),
        ]);
        let v = decode_get(&RawResponse::new(200, h, b"hello".to_vec())).unwrap();
        assert_eq!(v.context.as_deref(), Some("ctx"));
        let one = single_value(&v).unwrap();
        assert_eq!(one.value, b"hello");
        assert_eq!(one.etag.as_deref(), Some("\"e\""));
        assert_eq!(one.content_type.as_deref(), Some("text/plain"));
    }

    #[test]
    fn an_unreadable_answer_exits_2() {
        let h = headers(&[("content-type", "text/plain")]);
        let e = cli_error(decode_get(&RawResponse::new(300, h, b"x".to_vec())).unwrap_err());
        assert!(matches!(e, CliError::BadResponse(_)), "{e:?}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn unreachable_server_is_a_connection_error() {
        // Bind then drop a listener to get a local port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let args = AdminArgs {
            quorum: QuorumOpts::default(),
            output: AdminOutput::Human,
            conn: ConnOpts {
                url: format!("http://127.0.0.1:{port}"),
                timeout: Some(500),
                ca: None,
                token: None,
            },
        };
        let e = status(&args).unwrap_err();
        assert!(matches!(e, CliError::Connection(_)), "{e:?}");
        assert_eq!(e.exit_code(), 2);
    }

    /// Serves one canned HTTP answer on 127.0.0.1 and hands back the raw request it got.
    fn canned(response: Vec<u8>) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        use std::io::Read as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then as much body as Content-Length says.
            loop {
                let n = sock.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
                if let Some(end) = output_find(&req, b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if req.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            sock.write_all(&response).unwrap();
            req
        });
        (url, handle)
    }

    fn output_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    fn answer(status: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for h in headers {
            r.push_str(h);
            r.push_str("\r\n");
        }
        r.push_str("\r\n");
        let mut r = r.into_bytes();
        r.extend_from_slice(body);
        r
    }

    fn conn(url: String) -> ConnOpts {
        ConnOpts {
            url,
            timeout: Some(1500),
            ca: None,
            token: None,
        }
    }

    #[test]
    fn put_sends_value_headers_and_query() {
        let (url, server) = canned(answer("204 No Content", &["X-RiftKV-Context: newctx"], b""));
        let args = PutArgs {
            bucket: "carts".into(),
            key: "user/1".into(),
            value: Some("{\"items\":2}".into()),
            content_type: Some("application/json".into()),
            context: Some("oldctx".into()),
            if_none_match: false,
            conn: conn(url),
            quorum: QuorumOpts {
                w: Some(Quorum::Quorum),
                ..Default::default()
            },
        };
        put(&args).unwrap();
        let req = String::from_utf8(server.join().unwrap()).unwrap();
        let lower = req.to_ascii_lowercase();
        assert!(
            req.starts_with("PUT /v1/kv/carts/user%2F1?w=quorum&timeout=1500 HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(
            lower.contains("\r\ncontent-type: application/json\r\n"),
            "{req}"
        );
        assert!(lower.contains("\r\nx-riftkv-context: oldctx\r\n"), "{req}");
        assert!(req.ends_with("\r\n\r\n{\"items\":2}"), "{req}");
    }

    #[test]
    fn put_precondition_failure_exits_1_with_the_server_message() {
        let body = br#"{"error":"precondition_failed","message":"a live value exists"}"#;
        let (url, server) = canned(answer(
            "412 Precondition Failed",
            &["Content-Type: application/json"],
            body,
        ));
        let args = PutArgs {
            bucket: "b".into(),
            key: "k".into(),
            value: Some("v".into()),
            content_type: None,
            context: None,
            if_none_match: true,
            conn: conn(url),
            quorum: QuorumOpts::default(),
        };
        let e = put(&args).unwrap_err();
        let req = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(
            req.to_ascii_lowercase()
                .contains("\r\nif-none-match: *\r\n"),
            "{req}"
        );
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            e.to_string(),
            "server answered 412 precondition_failed: a live value exists"
        );
    }

    #[test]
    fn get_asks_for_json_and_accepts_siblings() {
        let body = br#"{"context":"c","siblings":[{"value_base64":"YQ==","deleted":false},{"value_base64":"Yg==","deleted":false}]}"#;
        let (url, server) = canned(answer(
            "300 Multiple Choices",
            &["Content-Type: application/json", "X-RiftKV-Context: c"],
            body,
        ));
        let args = GetArgs {
            bucket: "b".into(),
            key: "k".into(),
            output: GetOutput::Json,
            conn: conn(url),
            quorum: QuorumOpts {
                r: Some(Quorum::All),
                ..Default::default()
            },
        };
        get(&args).unwrap();
        let req = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(
            req.starts_with("GET /v1/kv/b/k?r=all&timeout=1500 HTTP/1.1"),
            "{req}"
        );
        assert!(
            req.to_ascii_lowercase()
                .contains("\r\naccept: application/json\r\n")
        );
    }

    #[test]
    fn get_of_a_missing_key_exits_1() {
        let (url, server) = canned(answer("404 Not Found", &[], b""));
        let args = GetArgs {
            bucket: "b".into(),
            key: "k".into(),
            output: GetOutput::Human,
            conn: conn(url),
            quorum: QuorumOpts::default(),
        };
        let e = get(&args).unwrap_err();
        server.join().unwrap();
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn get_value_output_refuses_siblings_with_exit_1() {
        let body =
            br#"{"context":"c","siblings":[{"value_base64":"YQ=="},{"value_base64":"Yg=="}]}"#;
        let (url, server) = canned(answer(
            "300 Multiple Choices",
            &["Content-Type: application/json"],
            body,
        ));
        let args = GetArgs {
            bucket: "b".into(),
            key: "k".into(),
            output: GetOutput::Value,
            conn: conn(url),
            quorum: QuorumOpts::default(),
        };
        let e = get(&args).unwrap_err();
        server.join().unwrap();
        assert!(matches!(e, CliError::Refused(_)), "{e:?}");
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn delete_sends_context_and_quorum_is_unavailable() {
        let body =
            br#"{"error":"quorum_unavailable","message":"not enough replicas","needed":3,"got":1}"#;
        let (url, server) = canned(answer(
            "503 Service Unavailable",
            &["Content-Type: application/json"],
            body,
        ));
        let args = DeleteArgs {
            bucket: "b".into(),
            key: "k".into(),
            context: Some("ctx".into()),
            conn: conn(url),
            quorum: QuorumOpts {
                w: Some(Quorum::All),
                pw: Some(Quorum::Count(2)),
                ..Default::default()
            },
        };
        let e = delete(&args).unwrap_err();
        let req = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(
            req.starts_with("DELETE /v1/kv/b/k?w=all&pw=2&timeout=1500 HTTP/1.1"),
            "{req}"
        );
        assert!(
            req.to_ascii_lowercase()
                .contains("\r\nx-riftkv-context: ctx\r\n")
        );
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("(got: 1, needed: 3)"), "{e}");
    }

    #[test]
    fn status_with_invalid_json_is_a_bad_response() {
        let (url, server) = canned(answer(
            "200 OK",
            &["Content-Type: application/json"],
            b"{nope",
        ));
        let args = AdminArgs {
            quorum: QuorumOpts::default(),
            output: AdminOutput::Human,
            conn: conn(url),
        };
        let e = status(&args).unwrap_err();
        let req = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(req.starts_with("GET /v1/admin/status HTTP/1.1"), "{req}");
        assert!(matches!(e, CliError::BadResponse(_)), "{e:?}");
        assert_eq!(e.exit_code(), 2);
    }
}
