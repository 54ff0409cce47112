//! `riftkv cluster plan` and `riftkv cluster commit`: look at the pending ring change and let
//! a staged one apply (nodes started with `--staged-changes`).

use clap::{Args, Subcommand};

use super::CliError;
use super::client::{AdminOutput, ConnOpts, cli_error, connect, print_admin, write_stdout};
use super::output;

#[derive(Args, Clone, Debug)]
pub struct ClusterCmd {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Subcommand, Clone, Debug)]
pub enum ClusterCommand {
    /// Show the pending ring change: staged or applying, its joins, leaves, removals and
    /// replaces, the partitions per node before and after, and the number of transfers
    Plan {
        /// Output format
        #[arg(long, short = 'o', value_enum, default_value_t = AdminOutput::Human)]
        output: AdminOutput,
        #[command(flatten)]
        conn: ConnOpts,
    },
    /// Apply the staged ring change: its transfers start, and ownership changes once they are
    /// done (follow it with `riftkv cluster plan` or `riftkv status`)
    Commit {
        #[command(flatten)]
        conn: ConnOpts,
    },
}

/// Runs one `riftkv cluster` command.
pub fn run(args: &ClusterCmd) -> Result<(), CliError> {
    match &args.command {
        ClusterCommand::Plan {
            output: format,
            conn,
        } => {
            let v = connect(conn)?.plan().map_err(cli_error)?;
            print_admin(&v, *format, output::render_plan)
        }
        ClusterCommand::Commit { conn } => {
            let v = connect(conn)?.commit_plan().map_err(cli_error)?;
            let line = format!(
                "committed plan {}: {} transfers start\n",
                v.get("plan_id").map_or("-".into(), |p| p.to_string()),
                v.get("transfers")
                    .and_then(|t| t.as_array())
                    .map_or(0, Vec::len)
            );
            write_stdout(line.as_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use clap::Parser;

    #[test]
    fn cluster_commands_parse() {
        let cli = Cli::try_parse_from([
            "riftkv",
            "cluster",
            "plan",
            "--url",
            "http://127.0.0.1:1",
            "--token",
            "t",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Cluster(ClusterCmd {
                command: ClusterCommand::Plan { ref conn, .. }
            }) if conn.token.as_deref() == Some("t") && conn.url == "http://127.0.0.1:1"
        ));
        let cli = Cli::try_parse_from(["riftkv", "cluster", "commit"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Cluster(ClusterCmd {
                command: ClusterCommand::Commit { .. }
            })
        ));
        assert!(Cli::try_parse_from(["riftkv", "cluster", "apply"]).is_err());
    }

    #[test]
    fn commit_without_a_reachable_node_is_a_connection_error() {
        // Nothing listens on port 1 of this address: a connection error, exit code 2.
        let conn = ConnOpts {
            url: "http://127.0.0.1:1".into(),
            ca: None,
            timeout: Some(500),
            token: None,
        };
        let e = run(&ClusterCmd {
            command: ClusterCommand::Commit { conn },
        })
        .unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
    }
}
