//! `riftkv user ...`: users, tokens and grants of a cluster with `--auth on`, through the
//! admin API (the caller's `--token` needs the `admin` permission).

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::CliError;
use super::client::{ConnOpts, cli_error, connect, write_stdout};

#[derive(Args, Clone, Debug)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
    #[command(flatten)]
    pub conn: ConnOpts,
}

#[derive(Subcommand, Clone, Debug)]
pub enum UserCommand {
    /// Create a user, or set the groups of an existing one
    Add {
        name: String,
        /// A group the user belongs to (repeat for several)
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
    },
    /// Remove a user and every token of theirs
    Remove { name: String },
    /// List users, their groups and token ids, and every grant
    List,
    /// Create a token for a user; prints it (the only time it is shown)
    Token {
        name: String,
        /// Lifetime in seconds [default: never expires]
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u64>,
    },
    /// Revoke one token of a user
    RevokeToken { name: String, id: String },
    /// Grant permissions (get put delete list props; admin metrics on '*') to user:NAME or
    /// group:NAME on a bucket or '*'
    Grant {
        subject: String,
        bucket: String,
        #[arg(required = true)]
        permissions: Vec<String>,
    },
    /// Revoke permissions granted with `grant`
    Revoke {
        subject: String,
        bucket: String,
        #[arg(required = true)]
        permissions: Vec<String>,
    },
}

fn pretty(v: &Value) -> Result<(), CliError> {
    let mut t =
        serde_json::to_string_pretty(v).map_err(|e| CliError::BadResponse(e.to_string()))?;
    t.push('\n');
    write_stdout(t.as_bytes())
}

/// Runs one `riftkv user` command.
pub fn run(args: &UserArgs) -> Result<(), CliError> {
    let c = connect(&args.conn)?;
    let call = |method: Method, literal: &str, segs: &[&str], body: Option<Value>| {
        c.admin(method, literal, segs, body.as_ref())
            .map_err(cli_error)
    };
    match &args.command {
        UserCommand::Add { name, groups } => {
            let v = call(
                Method::PUT,
                "/v1/admin/users",
                &[name],
                Some(json!({ "groups": groups })),
            )?;
            pretty(&v)
        }
        UserCommand::Remove { name } => {
            call(Method::DELETE, "/v1/admin/users", &[name], None).map(drop)
        }
        UserCommand::List => {
            let users = call(Method::GET, "/v1/admin/users", &[], None)?;
            let grants = call(Method::GET, "/v1/admin/grants", &[], None)?;
            pretty(&json!({ "users": users["users"], "grants": grants["grants"] }))
        }
        UserCommand::Token { name, ttl } => {
            let body = ttl.map_or_else(|| json!({}), |t| json!({ "ttl_seconds": t }));
            let v = call(
                Method::POST,
                &format!("/v1/admin/users/{}/tokens", seg(name)?),
                &[],
                Some(body),
            )?;
            let token = v["token"]
                .as_str()
                .ok_or_else(|| CliError::BadResponse("no token in the answer".into()))?;
            let id = v["id"].as_str().unwrap_or_default();
            eprintln!("riftkv: token id {id} (shown once; store it now)");
            write_stdout(format!("{token}\n").as_bytes())
        }
        UserCommand::RevokeToken { name, id } => call(
            Method::DELETE,
            &format!("/v1/admin/users/{}/tokens", seg(name)?),
            &[id],
            None,
        )
        .map(drop),
        UserCommand::Grant {
            subject,
            bucket,
            permissions,
        } => grants(&c, "grant", subject, bucket, permissions),
        UserCommand::Revoke {
            subject,
            bucket,
            permissions,
        } => grants(&c, "revoke", subject, bucket, permissions),
    }
}

/// A user name as a literal path part: names are letters, digits, '.', '_' and '-' only.
fn seg(name: &str) -> Result<&str, CliError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(name)
    } else {
        Err(CliError::Usage(format!(
            "invalid user name {name:?}: use letters, digits, '.', '_' and '-'"
        )))
    }
}

fn grants(
    c: &riftkv_client::blocking::Client,
    action: &str,
    subject: &str,
    bucket: &str,
    permissions: &[String],
) -> Result<(), CliError> {
    let body = json!({
        "action": action,
        "subject": subject,
        "bucket": bucket,
        "permissions": permissions,
    });
    c.admin(Method::POST, "/v1/admin/grants", &[], Some(&body))
        .map(drop)
        .map_err(cli_error)
}
