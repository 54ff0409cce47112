//! Parsing operations from the contract's JSON and refusing everything else precisely.

use riftkv_crdt::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

fn parse(t: DataType, v: serde_json::Value) -> Result<Op, CrdtError> {
    Op::from_json(t, &v)
}

fn err(t: DataType, v: serde_json::Value) -> String {
    let e = parse(t, v.clone()).expect_err(&v.to_string());
    assert_eq!(e.kind(), ErrorKind::BadRequest);
    e.to_string()
}

fn strings(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn parses_the_contract_shapes() {
    assert_eq!(
        parse(DataType::Counter, json!({"increment": -4})).unwrap(),
        Op::Counter(CounterOp { increment: -4 })
    );
    assert_eq!(
        parse(DataType::Set, json!({"add": ["a", "b"], "remove": ["c"]})).unwrap(),
        Op::Set(SetOp {
            add: strings(&["a", "b"]),
            remove: strings(&["c"])
        })
    );
    assert_eq!(
        parse(DataType::Set, json!({"remove": ["c"], "context": "opaque"})).unwrap(),
        Op::Set(SetOp {
            add: BTreeSet::new(),
            remove: strings(&["c"])
        })
    );
    let m = parse(
        DataType::Map,
        json!({"update": {
            "c": {"counter": {"increment": 1}},
            "s": {"set": {"add": ["x"]}},
            "r": {"register": {"assign": "v"}},
            "f": {"flag": "enable"},
            "g": {"flag": "disable"},
            "m": {"map": {"remove": ["z"]}}
        }, "remove": ["old"]}),
    )
    .unwrap();
    let mut update = BTreeMap::new();
    update.insert(
        "c".to_string(),
        FieldOp::Counter(CounterOp { increment: 1 }),
    );
    update.insert(
        "s".to_string(),
        FieldOp::Set(SetOp {
            add: strings(&["x"]),
            remove: BTreeSet::new(),
        }),
    );
    update.insert("r".to_string(), FieldOp::Register("v".to_string()));
    update.insert("f".to_string(), FieldOp::Flag(true));
    update.insert("g".to_string(), FieldOp::Flag(false));
    update.insert(
        "m".to_string(),
        FieldOp::Map(MapOp {
            update: BTreeMap::new(),
            remove: strings(&["z"]),
        }),
    );
    assert_eq!(
        m,
        Op::Map(MapOp {
            update,
            remove: strings(&["old"])
        })
    );
    assert!(m.needs_context());
    assert!(
        !parse(DataType::Set, json!({"add": ["a"]}))
            .unwrap()
            .needs_context()
    );
}

#[test]
fn refuses_wrong_shapes_with_precise_messages() {
    let cases: Vec<(DataType, serde_json::Value, &str)> = vec![
        (
            DataType::Counter,
            json!(5),
            "counter operation: expected an object",
        ),
        (DataType::Counter, json!({}), "\"increment\" is required"),
        (
            DataType::Counter,
            json!({"incr": 1}),
            "unknown key \"incr\"",
        ),
        (
            DataType::Counter,
            json!({"increment": 1.5}),
            "\"increment\" must be an integer",
        ),
        (
            DataType::Counter,
            json!({"increment": "1"}),
            "\"increment\" must be an integer",
        ),
        (
            DataType::Counter,
            json!({"increment": u64::MAX}),
            "\"increment\" must be an integer",
        ),
        (DataType::Set, json!({}), "needs \"add\" or \"remove\""),
        (
            DataType::Set,
            json!({"add": "x"}),
            "\"add\" must be an array of strings",
        ),
        (
            DataType::Set,
            json!({"add": ["x", 1]}),
            "\"add\"[1] must be a string",
        ),
        (
            DataType::Set,
            json!({"add": ["x"], "remove": ["x"]}),
            "\"x\" is both added and removed",
        ),
        (
            DataType::Set,
            json!({"add": [], "del": []}),
            "unknown key \"del\"",
        ),
        (
            DataType::Map,
            json!([]),
            "map operation: expected an object",
        ),
        (DataType::Map, json!({}), "needs \"update\" or \"remove\""),
        (
            DataType::Map,
            json!({"update": []}),
            "\"update\" must be an object",
        ),
        (
            DataType::Map,
            json!({"update": {"f": {}}}),
            "update.\"f\": expected an object with one of",
        ),
        (
            DataType::Map,
            json!({"update": {"f": {"counter": {"increment": 1}, "flag": "enable"}}}),
            "update.\"f\": expected an object with one of",
        ),
        (
            DataType::Map,
            json!({"update": {"f": {"gauge": 1}}}),
            "update.\"f\": unknown type \"gauge\"",
        ),
        (
            DataType::Map,
            json!({"update": {"f": {"flag": true}}}),
            "update.\"f\".flag: must be \"enable\" or \"disable\"",
        ),
        (
            DataType::Map,
            json!({"update": {"f": {"register": "v"}}}),
            "update.\"f\".register: expected an object",
        ),
        (
            DataType::Map,
            json!({"update": {"f": {"register": {"assign": 1}}}}),
            "\"assign\" must be a string",
        ),
        (
            DataType::Map,
            json!({"update": {"f": {"register": {"set": "v"}}}}),
            "unknown key \"set\"",
        ),
        (
            DataType::Map,
            json!({"update": {"f": {"set": {"add": [1]}}}}),
            "update.\"f\".set: \"add\"[0] must be a string",
        ),
        (
            DataType::Map,
            json!({"update": {"f": {"map": {"update": {"g": {"counter": {}}}}}}}),
            "update.\"f\".map.update.\"g\".counter: \"increment\" is required",
        ),
        (
            DataType::Map,
            json!({"update": {"f": {"flag": "enable"}}, "remove": ["f"]}),
            "field \"f\" is both updated and removed",
        ),
        (
            DataType::Map,
            json!({"remove": "f"}),
            "\"remove\" must be an array of strings",
        ),
        (
            DataType::Map,
            json!({"update": {}, "delete": ["f"]}),
            "unknown key \"delete\"",
        ),
    ];
    for (t, v, want) in cases {
        let msg = err(t, v.clone());
        assert!(
            msg.contains(want),
            "{v}: got {msg:?}, want it to contain {want:?}"
        );
    }
    // "context" is accepted only at the top level of the body.
    let msg = err(
        DataType::Map,
        json!({"update": {"f": {"map": {"context": "x", "remove": []}}}}),
    );
    assert!(msg.contains("unknown key \"context\""), "{msg}");
    let e = Op::from_json_str(DataType::Set, "{not json").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadRequest);
    assert!(DataType::parse("hll").is_err());
    assert_eq!(DataType::parse("map").unwrap(), DataType::Map);
}
