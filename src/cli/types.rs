//! The data type subcommands: `counter`, `set` and `map` over `/v1/types` (CONTRACT §6),
//! through the blocking [`riftkv_client`]. Without an operation they read and print the value;
//! with one they apply it and print the merged value the server answers.

use clap::{Args, ValueEnum};
use riftkv_client::{Error as ClientError, Options, TypeValue};
use serde_json::{Value, json};

use super::CliError;
use super::client::{ConnOpts, QuorumOpts, cli_error, connect, write_stdout};

/// How a data type value is printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum TypeOutput {
    /// The value's JSON alone
    #[default]
    Value,
    /// {"type", "value", "context"}
    Json,
}

/// Options every data type command shares.
#[derive(Args, Clone, Debug)]
pub struct TypeOpts {
    /// Context of an earlier read, for removes; without it a remove first reads the key and
    /// removes what that read saw
    #[arg(long, value_name = "TOKEN")]
    pub context: Option<String>,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value_t = TypeOutput::Value)]
    pub output: TypeOutput,
    #[command(flatten)]
    pub conn: ConnOpts,
    #[command(flatten)]
    pub quorum: QuorumOpts,
}

/// `riftkv counter BUCKET KEY [--increment N]`.
#[derive(Args, Clone, Debug)]
pub struct CounterArgs {
    /// A bucket whose datatype is counter
    pub bucket: String,
    /// The counter's key
    pub key: String,
    /// Add N (negative decrements); without it, print the counter
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub increment: Option<i64>,
    #[command(flatten)]
    pub opts: TypeOpts,
}

/// `riftkv set BUCKET KEY [--add M]... [--remove M]...`.
#[derive(Args, Clone, Debug)]
pub struct SetArgs {
    /// A bucket whose datatype is set
    pub bucket: String,
    /// The set's key
    pub key: String,
    /// Add a member (repeatable)
    #[arg(long, value_name = "MEMBER")]
    pub add: Vec<String>,
    /// Remove a member (repeatable)
    #[arg(long, value_name = "MEMBER")]
    pub remove: Vec<String>,
    #[command(flatten)]
    pub opts: TypeOpts,
}

/// `riftkv map BUCKET KEY [OPERATION]`.
#[derive(Args, Clone, Debug)]
pub struct MapArgs {
    /// A bucket whose datatype is map
    pub bucket: String,
    /// The map's key
    pub key: String,
    /// The map operation as JSON, e.g. '{"update": {"n": {"counter": {"increment": 1}}}}';
    /// without it, print the map
    pub operation: Option<String>,
    #[command(flatten)]
    pub opts: TypeOpts,
}

/// The operation of `counter`, if any.
pub fn counter_op(increment: Option<i64>) -> Option<Value> {
    increment.map(|n| json!({ "increment": n }))
}

/// The operation of `set`, if any.
pub fn set_op(add: &[String], remove: &[String]) -> Option<Value> {
    if add.is_empty() && remove.is_empty() {
        return None;
    }
    Some(json!({ "add": add, "remove": remove }))
}

/// The operation of `map`, if any; it must be a JSON object.
pub fn map_op(text: Option<&str>) -> Result<Option<Value>, CliError> {
    let Some(text) = text else {
        return Ok(None);
    };
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(Some(v)),
        Ok(_) => Err(CliError::Usage(
            "the map operation must be a JSON object".into(),
        )),
        Err(e) => Err(CliError::Usage(format!(
            "the map operation is not JSON: {e}"
        ))),
    }
}

/// Whether an operation removes anything, at any depth (set members or map fields).
pub fn removes(op: &Value) -> bool {
    match op {
        Value::Object(m) => m.iter().any(|(k, v)| {
            (k == "remove" && v.as_array().is_some_and(|a| !a.is_empty())) || removes(v)
        }),
        _ => false,
    }
}

pub fn counter(args: &CounterArgs) -> Result<(), CliError> {
    run(
        &args.bucket,
        &args.key,
        counter_op(args.increment),
        &args.opts,
    )
}

pub fn set(args: &SetArgs) -> Result<(), CliError> {
    run(
        &args.bucket,
        &args.key,
        set_op(&args.add, &args.remove),
        &args.opts,
    )
}

pub fn map(args: &MapArgs) -> Result<(), CliError> {
    let op = map_op(args.operation.as_deref())?;
    run(&args.bucket, &args.key, op, &args.opts)
}

/// Reads (no operation) or updates the key, then prints the value.
fn run(bucket: &str, key: &str, op: Option<Value>, opts: &TypeOpts) -> Result<(), CliError> {
    let client = connect(&opts.conn)?;
    let base = opts.quorum.options(&opts.conn);
    let Some(op) = op else {
        let v = client.get_type(bucket, key, &base).map_err(cli_error)?;
        return print(&v, opts.output);
    };
    let context = match &opts.context {
        Some(c) => Some(c.clone()),
        None if removes(&op) => match client.get_type(bucket, key, &base) {
            Ok(v) => Some(v.context),
            // Nothing to remove yet; the server still checks the operation.
            Err(ClientError::NotFound { .. }) => None,
            Err(e) => return Err(cli_error(e)),
        },
        None => None,
    };
    let update = Options {
        context,
        returnbody: true,
        ..base
    };
    match client
        .update_type(bucket, key, &op, &update)
        .map_err(cli_error)?
    {
        Some(v) => print(&v, opts.output),
        None => Ok(()),
    }
}

fn print(v: &TypeValue, output: TypeOutput) -> Result<(), CliError> {
    let text = match output {
        TypeOutput::Value => v.value.to_string(),
        TypeOutput::Json => serde_json::to_string(v)
            .map_err(|e| CliError::BadResponse(format!("cannot print the value: {e}")))?,
    };
    write_stdout(format!("{text}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_from_flags() {
        assert_eq!(counter_op(None), None);
        assert_eq!(counter_op(Some(-3)), Some(json!({"increment": -3})));
        assert_eq!(set_op(&[], &[]), None);
        let op = set_op(&["a".into()], &["b".into()]).unwrap();
        assert_eq!(op, json!({"add": ["a"], "remove": ["b"]}));
        assert!(removes(&op));
        assert!(!removes(&set_op(&["a".into()], &[]).unwrap()));
        assert_eq!(map_op(None).unwrap(), None);
        assert!(matches!(map_op(Some("[1]")), Err(CliError::Usage(_))));
        assert!(matches!(map_op(Some("{")), Err(CliError::Usage(_))));
        let nested = map_op(Some(r#"{"update": {"s": {"set": {"remove": ["x"]}}}}"#))
            .unwrap()
            .unwrap();
        assert!(removes(&nested));
        let plain = map_op(Some(r#"{"update": {"n": {"counter": {"increment": 1}}}}"#))
            .unwrap()
            .unwrap();
        assert!(!removes(&plain));
    }
}
