//! The `riftkv` binary's subcommands: `server`, `dev` and the client commands. The database
//! itself lives in the workspace crates: `riftkv-types` → `riftkv-core` → `riftkv-cluster` →
//! `riftkv-server` (see ARCHITECTURE.md).

pub mod cli;
