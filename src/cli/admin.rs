//! `riftkv admin backup` (online, through a node's API) and `riftkv admin restore` (offline,
//! on the stopped node's machine; no server involved).

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;
use std::path::PathBuf;

use super::CliError;
use super::client::{ConnOpts, cli_error, connect, write_stdout};

#[derive(Args, Clone, Debug)]
pub struct AdminCmd {
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Clone, Debug)]
pub enum AdminCommand {
    /// Ask the node at --url to write an online, consistent snapshot of its data into DIR
    /// on its own file system (absolute; absent or empty); prints the backup's manifest
    Backup {
        /// The backup directory, on the node's machine
        #[arg(long, value_name = "DIR")]
        out: String,
        #[command(flatten)]
        conn: ConnOpts,
    },
    /// Replace the dead member OLD by NEW, a member that joined and owns no partitions yet:
    /// OLD is removed and NEW receives exactly its partitions from the surviving replicas
    /// (follow it with `riftkv status`)
    Replace {
        /// The member to replace
        old: String,
        /// The member that takes over its partitions
        new: String,
        #[command(flatten)]
        conn: ConnOpts,
    },
    /// With the node stopped: prepare its data dir from a backup. The node starts a new
    /// incarnation on it; a snapshot older than its tombstone grace is refused
    Restore {
        /// The backup directory (holding db/ and backup.json)
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The stopped node's --data-dir (must not hold a database)
        #[arg(long, value_name = "DATA")]
        data_dir: PathBuf,
        /// Restore a snapshot older than its tombstone grace anyway: deleted values may
        /// come back
        #[arg(long)]
        force: bool,
    },
}

/// Runs one `riftkv admin` command.
pub fn run(args: &AdminCmd) -> Result<(), CliError> {
    match &args.command {
        AdminCommand::Backup { out, conn } => backup(conn, out),
        AdminCommand::Replace { old, new, conn } => replace(conn, old, new),
        AdminCommand::Restore {
            from,
            data_dir,
            force,
        } => restore(from, data_dir, *force),
    }
}

fn backup(conn: &ConnOpts, out: &str) -> Result<(), CliError> {
    let c = connect(conn)?;
    let v = c
        .admin(
            Method::POST,
            "/v1/admin/backup",
            &[],
            Some(&json!({ "out": out })),
        )
        .map_err(cli_error)?;
    let mut t =
        serde_json::to_string_pretty(&v).map_err(|e| CliError::BadResponse(e.to_string()))?;
    t.push('\n');
    write_stdout(t.as_bytes())
}

fn replace(conn: &ConnOpts, old: &str, new: &str) -> Result<(), CliError> {
    let c = connect(conn)?;
    let v = c
        .admin(Method::POST, "/v1/admin/replace", &[old, new], None)
        .map_err(cli_error)?;
    let message = v
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or("accepted");
    write_stdout(format!("{message}\n").as_bytes())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn restore(
    from: &std::path::Path,
    data_dir: &std::path::Path,
    force: bool,
) -> Result<(), CliError> {
    let r = riftkv_server::backup::restore(from, data_dir, force, now_ms())
        .map_err(|e| CliError::Local(format!("restore refused: {e}")))?;
    if let Some(w) = &r.warning {
        eprintln!("riftkv: {w}");
    }
    let age_s = riftkv_server::backup::snapshot_age_ms(&r.manifest, now_ms()) / 1000;
    let line = format!(
        "restored node {} of cluster {} ({} bytes, snapshot {} s old) from {} into {}; \
         it starts a new incarnation\n",
        r.manifest.node_id,
        r.manifest.cluster_name,
        r.bytes,
        age_s,
        from.display(),
        data_dir.join(riftkv_server::backup::DB_DIR).display()
    );
    write_stdout(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use clap::Parser;

    #[test]
    fn admin_commands_parse() {
        let cli = Cli::try_parse_from([
            "riftkv",
            "admin",
            "backup",
            "--url",
            "http://127.0.0.1:1",
            "--out",
            "/b",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCmd { command: AdminCommand::Backup { ref out, .. } }) if out == "/b"
        ));
        let cli = Cli::try_parse_from([
            "riftkv",
            "admin",
            "restore",
            "--from",
            "/b",
            "--data-dir",
            "/d",
            "--force",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCmd {
                command: AdminCommand::Restore { force: true, .. }
            })
        ));
        assert!(Cli::try_parse_from(["riftkv", "admin", "restore", "--from", "/b"]).is_err());
    }

    #[test]
    fn a_refused_restore_is_one_line_and_exit_code_2() {
        let tmp = tempfile::tempdir().unwrap();
        let e = restore(tmp.path(), &tmp.path().join("data"), false).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let line = e.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("no backup.json"), "{line}");
    }
}
