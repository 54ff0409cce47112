//! On-disk format versions and the migration runner.
//!
//! Each file in `migrations/` describes one format version and names the step that turns the
//! previous format into it. The files are embedded in the binary; at open the runner applies
//! every step newer than the version recorded in `meta`, in order, each step together with its
//! version bump in one synced atomic batch, so a crash leaves the data at one version or the
//! next, never between. A data dir written by a newer binary is refused before anything is
//! written to it.

use super::StorageError;
use super::backend::{Backend, Cf, RawOp, cf_is_empty};
use super::record;
use serde::Deserialize;

/// Meta entry holding the on-disk format version (u32 BE inside a record envelope).
pub const VERSION_KEY: &str = "storage.format_version";

/// A migration step: reads the data at the previous version and returns the changes that
/// bring it to the next one. The runner appends the version bump and writes them atomically.
pub type StepFn = fn(&dyn Backend) -> Result<Vec<RawOp>, StorageError>;

/// One format version and how to reach it.
#[derive(Clone, Debug)]
pub struct Migration {
    pub version: u32,
    pub description: String,
    pub step_name: String,
    pub step: StepFn,
}

/// The migration files shipped in the binary, in version order.
const FILES: &[(&str, &str)] = &[
    (
        "0001_initial.toml",
        include_str!("../../../../migrations/0001_initial.toml"),
    ),
    (
        "0002_write_identities.toml",
        include_str!("../../../../migrations/0002_write_identities.toml"),
    ),
    (
        "0003_bucket_props_json.toml",
        include_str!("../../../../migrations/0003_bucket_props_json.toml"),
    ),
    (
        "0004_expiry.toml",
        include_str!("../../../../migrations/0004_expiry.toml"),
    ),
    (
        "0005_security.toml",
        include_str!("../../../../migrations/0005_security.toml"),
    ),
    (
        "0006_tombstone_index.toml",
        include_str!("../../../../migrations/0006_tombstone_index.toml"),
    ),
    (
        "0007_staged_plan.toml",
        include_str!("../../../../migrations/0007_staged_plan.toml"),
    ),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrationFile {
    version: u32,
    description: String,
    step: String,
}

/// Maps the step names used in migration files to their code.
fn step_by_name(name: &str) -> Option<StepFn> {
    match name {
        "initial_layout" => Some(initial_layout),
        "write_identities" => Some(write_identities),
        "bucket_props_json" => Some(super::legacy_ring_state::bucket_props_json),
        "expiry" => Some(expiry),
        "security" => Some(super::legacy_ring_state::security),
        "tombstone_index" => Some(tombstone_index),
        "staged_plan" => Some(super::legacy_ring_state::staged_plan),
        _ => None,
    }
}

/// Format 1: the column families are created at open, so there is nothing to rewrite.
fn initial_layout(_: &dyn Backend) -> Result<Vec<RawOp>, StorageError> {
    Ok(Vec::new())
}

/// Format 2: format-1 objects are read as they are (actors at epoch 0); only the version moves,
/// so that an older binary refuses the data dir instead of taking new objects for damage.
fn write_identities(_: &dyn Backend) -> Result<Vec<RawOp>, StorageError> {
    Ok(Vec::new())
}

/// Expiry (object encoding 3, the expiry index): older objects never expire, so nothing is
/// rewritten or indexed; only the version moves, so an older binary refuses the data dir
/// instead of taking encoding-3 objects for damage.
fn expiry(_: &dyn Backend) -> Result<Vec<RawOp>, StorageError> {
    Ok(Vec::new())
}

/// Tombstone index: one read of every object, listing those whose versions are all
/// tombstones. Damaged or undecodable records are left out: the write that repairs one lists
/// it if it is dead.
fn tombstone_index(b: &dyn Backend) -> Result<Vec<RawOp>, StorageError> {
    use crate::version::identity::StoredCopy;
    let mut ops = Vec::new();
    b.raw_scan(Cf::Objects, &[], &mut |k, v| {
        let dead = super::keys::decode_object(k).is_some()
            && record::open(v)
                .ok()
                .and_then(|payload| StoredCopy::decode(payload).ok())
                .is_some_and(|c| c.object.in_tombstone_index());
        if dead {
            ops.push(RawOp::Put(Cf::Tombstones, k.to_vec(), record::seal(&[])));
        }
        super::backend::Flow::Continue
    })?;
    Ok(ops)
}

/// Parses migration files (name, TOML text), resolves their steps and checks the list.
pub fn parse(files: &[(&str, &str)]) -> Result<Vec<Migration>, StorageError> {
    let mut out = Vec::with_capacity(files.len());
    for (name, text) in files {
        let f: MigrationFile = toml::from_str(text)
            .map_err(|e| StorageError::Migration(format!("migration file {name}: {e}")))?;
        let step = step_by_name(&f.step).ok_or_else(|| {
            StorageError::Migration(format!("migration file {name}: unknown step {:?}", f.step))
        })?;
        out.push(Migration {
            version: f.version,
            description: f.description,
            step_name: f.step,
            step,
        });
    }
    validate(&out)?;
    Ok(out)
}

/// The migrations embedded in this binary.
pub fn embedded() -> Result<Vec<Migration>, StorageError> {
    parse(FILES)
}

/// Versions must be 1, 2, 3, ... with no gap: a missing number would be a missing step, and a
/// data dir at the version before it would skip that step's rewrite.
pub fn validate(list: &[Migration]) -> Result<(), StorageError> {
    for (i, m) in list.iter().enumerate() {
        let expected = i as u32 + 1;
        if m.version != expected {
            return Err(StorageError::Migration(format!(
                "migrations are out of order or have a gap: expected version {expected}, found {}",
                m.version
            )));
        }
    }
    Ok(())
}

/// Reads the recorded format version; `None` when the data dir has never been stamped.
pub fn read_version(b: &dyn Backend) -> Result<Option<u32>, StorageError> {
    let Some(raw) = b.raw_get(Cf::Meta, VERSION_KEY.as_bytes())? else {
        return Ok(None);
    };
    let damaged = |why: String| StorageError::Corrupt {
        what: format!("meta {VERSION_KEY:?}: {why}"),
    };
    let payload = record::open(&raw).map_err(|d| damaged(d.to_string()))?;
    let bytes: [u8; 4] = payload
        .try_into()
        .map_err(|_| damaged(format!("expected 4 bytes, found {}", payload.len())))?;
    Ok(Some(u32::from_be_bytes(bytes)))
}

/// The meta change that records `version`.
pub fn version_op(version: u32) -> RawOp {
    RawOp::Put(
        Cf::Meta,
        VERSION_KEY.as_bytes().to_vec(),
        record::seal(&version.to_be_bytes()),
    )
}

/// Brings the data to the last version of `list`; returns the versions applied.
pub fn run(b: &dyn Backend, list: &[Migration]) -> Result<Vec<u32>, StorageError> {
    validate(list)?;
    let supported = list.last().map_or(0, |m| m.version);
    let current = match read_version(b)? {
        Some(v) => v,
        None => {
            for cf in Cf::ALL {
                if !cf_is_empty(b, cf)? {
                    return Err(StorageError::Migration(format!(
                        "data dir holds data (column family {}) but no on-disk format version",
                        cf.name()
                    )));
                }
            }
            0
        }
    };
    if current > supported {
        return Err(StorageError::NewerFormat {
            found: current,
            supported,
        });
    }
    let mut applied = Vec::new();
    for m in list.iter().filter(|m| m.version > current) {
        let mut ops = (m.step)(b).map_err(|e| match e {
            StorageError::Migration(s) => StorageError::Migration(s),
            other => StorageError::Migration(format!(
                "step {} to format {}: {other}",
                m.step_name, m.version
            )),
        })?;
        ops.push(version_op(m.version));
        b.raw_write(ops, true)?;
        tracing::info!(version = m.version, step = %m.step_name, "applied storage migration");
        applied.push(m.version);
    }
    Ok(applied)
}

#[cfg(all(test, feature = "rocksdb"))]
mod tests {
    use super::*;
    use crate::membership::state::{RING_STATE_META, RingState};
    use crate::storage::FORMAT_VERSION;
    use crate::storage::backend::Flow;
    use crate::storage::{MemoryStorage, ObjectKey, RocksStorage, Storage, WriteBatch};
    use crate::version::ConflictMode;

    #[test]
    fn embedded_files_parse_and_increase_from_one() {
        let list = embedded().unwrap();
        assert!(!list.is_empty());
        assert_eq!(list[0].version, 1);
        for w in list.windows(2) {
            assert!(w[0].version < w[1].version);
        }
        for m in &list {
            assert!(!m.description.trim().is_empty());
        }
        assert_eq!(list.last().unwrap().version, FORMAT_VERSION);
        // File names carry the version they describe.
        for ((name, _), m) in FILES.iter().zip(&list) {
            assert!(name.starts_with(&format!("{:04}_", m.version)), "{name}");
        }
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let unknown = parse(&[(
            "0001_x.toml",
            "version = 1\ndescription = \"d\"\nstep = \"nope\"",
        )]);
        assert!(matches!(unknown, Err(StorageError::Migration(s)) if s.contains("unknown step")));
        let late_start = parse(&[(
            "0002_x.toml",
            "version = 2\ndescription = \"d\"\nstep = \"initial_layout\"",
        )]);
        assert!(
            matches!(late_start, Err(StorageError::Migration(s)) if s.contains("out of order"))
        );
        let backwards = parse(&[
            (
                "0001_x.toml",
                "version = 1\ndescription = \"d\"\nstep = \"initial_layout\"",
            ),
            (
                "0003_x.toml",
                "version = 3\ndescription = \"d\"\nstep = \"initial_layout\"",
            ),
            (
                "0002_x.toml",
                "version = 2\ndescription = \"d\"\nstep = \"initial_layout\"",
            ),
        ]);
        assert!(matches!(backwards, Err(StorageError::Migration(s)) if s.contains("out of order")));
        // A skipped number is a missing step.
        let gap = parse(&[
            (
                "0001_x.toml",
                "version = 1\ndescription = \"d\"\nstep = \"initial_layout\"",
            ),
            (
                "0004_x.toml",
                "version = 4\ndescription = \"d\"\nstep = \"expiry\"",
            ),
        ]);
        assert!(matches!(gap, Err(StorageError::Migration(s)) if s.contains("gap")));
        let junk = parse(&[("0001_x.toml", "version = \"one\"")]);
        assert!(matches!(junk, Err(StorageError::Migration(s)) if s.contains("0001_x.toml")));
    }

    #[test]
    fn newer_format_message_is_one_clear_line() {
        let e = StorageError::NewerFormat {
            found: 7,
            supported: 1,
        };
        assert_eq!(
            e.to_string(),
            "data dir was written by a newer RiftKV: on-disk format 7, this binary supports up to 1"
        );
    }

    fn ok(b: &str, k: &str) -> ObjectKey {
        ObjectKey {
            partition: 1,
            bucket: b.as_bytes().to_vec(),
            key: k.as_bytes().to_vec(),
        }
    }

    /// Test format 2: every object value gains the suffix "+v2", and the step counts its runs
    /// and notes its place in the order in meta, inside the same atomic batch.
    fn to_v2(b: &dyn Backend) -> Result<Vec<RawOp>, StorageError> {
        let mut ops = rewrite_objects(b, b"+v2")?;
        ops.extend(note_run(b, "2")?);
        Ok(ops)
    }

    /// Test format 3: relies on format 2 having run first.
    fn to_v3(b: &dyn Backend) -> Result<Vec<RawOp>, StorageError> {
        let mut ops = rewrite_objects(b, b"+v3")?;
        ops.extend(note_run(b, "3")?);
        Ok(ops)
    }

    fn rewrite_objects(b: &dyn Backend, suffix: &[u8]) -> Result<Vec<RawOp>, StorageError> {
        let mut ops = Vec::new();
        b.raw_scan(Cf::Objects, &[], &mut |k, v| {
            if let Ok(p) = record::open(v) {
                let mut p = p.to_vec();
                p.extend_from_slice(suffix);
                ops.push(RawOp::Put(Cf::Objects, k.to_vec(), record::seal(&p)));
            }
            Flow::Continue
        })?;
        Ok(ops)
    }

    fn note_run(b: &dyn Backend, tag: &str) -> Result<Vec<RawOp>, StorageError> {
        let key = b"test.migration_runs".to_vec();
        let mut runs = match b.raw_get(Cf::Meta, &key)? {
            Some(raw) => record::open(&raw)
                .map_err(|d| StorageError::Migration(d.to_string()))?
                .to_vec(),
            None => Vec::new(),
        };
        runs.extend_from_slice(tag.as_bytes());
        Ok(vec![RawOp::Put(Cf::Meta, key, record::seal(&runs))])
    }

    fn with_test_steps() -> Vec<Migration> {
        let mut list = embedded().unwrap();
        for (version, step) in [
            (FORMAT_VERSION + 1, to_v2 as StepFn),
            (FORMAT_VERSION + 2, to_v3 as StepFn),
        ] {
            list.push(Migration {
                version,
                description: format!("test format {version}"),
                step_name: format!("to_v{version}"),
                step,
            });
        }
        list
    }

    #[test]
    fn multi_step_upgrade_runs_each_step_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksStorage::open(dir.path()).unwrap();
            assert_eq!(s.format_version().unwrap(), Some(FORMAT_VERSION));
            let mut b = WriteBatch::new();
            b.put_object(ok("b", "k1"), b"one".to_vec())
                .put_object(ok("b", "k2"), b"two".to_vec());
            s.write(b, true).unwrap();
        }
        let list = with_test_steps();
        {
            let (s, applied) = RocksStorage::open_with_migrations(dir.path(), &list).unwrap();
            assert_eq!(applied, vec![FORMAT_VERSION + 1, FORMAT_VERSION + 2]);
            assert_eq!(s.format_version().unwrap(), Some(FORMAT_VERSION + 2));
            assert_eq!(
                s.get_object(&ok("b", "k1")).unwrap(),
                Some(b"one+v2+v3".to_vec())
            );
            assert_eq!(
                s.get_object(&ok("b", "k2")).unwrap(),
                Some(b"two+v2+v3".to_vec())
            );
            assert_eq!(
                s.get_meta("test.migration_runs").unwrap(),
                Some(b"23".to_vec())
            );
        }
        // Reopening at the same version is idempotent: no step runs again.
        {
            let (s, applied) = RocksStorage::open_with_migrations(dir.path(), &list).unwrap();
            assert!(applied.is_empty());
            assert_eq!(s.format_version().unwrap(), Some(FORMAT_VERSION + 2));
            assert_eq!(
                s.get_object(&ok("b", "k1")).unwrap(),
                Some(b"one+v2+v3".to_vec())
            );
            assert_eq!(
                s.get_meta("test.migration_runs").unwrap(),
                Some(b"23".to_vec())
            );
        }
        // The shipped binary, which knows only its own formats, refuses the upgraded data dir.
        match RocksStorage::open(dir.path()) {
            Err(StorageError::NewerFormat { found, supported }) => {
                assert_eq!((found, supported), (FORMAT_VERSION + 2, FORMAT_VERSION));
            }
            other => panic!("expected NewerFormat, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn upgrade_from_an_intermediate_version_runs_only_the_rest() {
        let s = MemoryStorage::new();
        s.write(
            {
                let mut b = WriteBatch::new();
                b.put_object(ok("b", "k"), b"x".to_vec());
                b
            },
            false,
        )
        .unwrap();
        let list = with_test_steps();
        let n = list.len();
        assert_eq!(
            run(s.backend(), &list[..n - 1]).unwrap(),
            vec![FORMAT_VERSION + 1]
        );
        assert_eq!(run(s.backend(), &list).unwrap(), vec![FORMAT_VERSION + 2]);
        assert_eq!(run(s.backend(), &list).unwrap(), Vec::<u32>::new());
        assert_eq!(
            s.get_object(&ok("b", "k")).unwrap(),
            Some(b"x+v2+v3".to_vec())
        );
        assert_eq!(
            s.get_meta("test.migration_runs").unwrap(),
            Some(b"23".to_vec())
        );
    }

    #[test]
    fn newer_format_is_refused_without_writing() {
        let s = MemoryStorage::new();
        let newer = FORMAT_VERSION + 1;
        s.backend()
            .raw_write(vec![version_op(newer)], false)
            .unwrap();
        let before = s
            .backend()
            .raw_get(Cf::Meta, VERSION_KEY.as_bytes())
            .unwrap();
        match run(s.backend(), &embedded().unwrap()) {
            Err(e @ StorageError::NewerFormat { .. }) => assert_eq!(
                e.to_string(),
                format!(
                    "data dir was written by a newer RiftKV: on-disk format {newer}, this binary supports up to {FORMAT_VERSION}"
                )
            ),
            other => panic!("expected NewerFormat, got {other:?}"),
        }
        assert_eq!(
            s.backend()
                .raw_get(Cf::Meta, VERSION_KEY.as_bytes())
                .unwrap(),
            before
        );
    }

    #[test]
    fn data_without_a_version_is_refused() {
        let s = MemoryStorage::new();
        s.backend()
            .raw_write(
                vec![RawOp::Delete(Cf::Meta, VERSION_KEY.as_bytes().to_vec())],
                false,
            )
            .unwrap();
        // Empty and unversioned: treated as brand new.
        let all: Vec<u32> = embedded().unwrap().iter().map(|m| m.version).collect();
        assert_eq!(run(s.backend(), &embedded().unwrap()).unwrap(), all);
        s.backend()
            .raw_write(
                vec![RawOp::Delete(Cf::Meta, VERSION_KEY.as_bytes().to_vec())],
                false,
            )
            .unwrap();
        let mut b = WriteBatch::new();
        b.put_aae(b"t".to_vec(), b"x".to_vec());
        s.write(b, false).unwrap();
        assert!(matches!(
            run(s.backend(), &embedded().unwrap()),
            Err(StorageError::Migration(m)) if m.contains("no on-disk format version")
        ));
    }

    #[test]
    fn damaged_version_is_corrupt_not_guessed() {
        let s = MemoryStorage::new();
        s.raw_put_for_test(Cf::Meta, VERSION_KEY.as_bytes(), b"\x01junk")
            .unwrap();
        assert!(matches!(
            run(s.backend(), &embedded().unwrap()),
            Err(StorageError::Corrupt { .. })
        ));
        s.raw_put_for_test(Cf::Meta, VERSION_KEY.as_bytes(), &record::seal(b"12345"))
            .unwrap();
        assert!(matches!(
            run(s.backend(), &embedded().unwrap()),
            Err(StorageError::Corrupt { .. })
        ));
    }

    /// A data dir at format 2 (before expiry) opens at the current format with its objects
    /// intact and readable, and nothing in the expiry index.
    #[test]
    fn a_format_two_data_dir_opens_with_its_objects_intact() {
        use crate::version::{Actor, Object};
        // Object encoding 2 of one version "hello" (text/plain, 1000 ms) under dot (n1, 7):1,
        // byte for byte as a format-2 binary wrote it.
        let v2: &[u8] = &[
            2, 1, 2, b'n', b'1', 7, 1, 1, 1, 5, b'h', b'e', b'l', b'l', b'o', 10, b't', b'e', b'x',
            b't', b'/', b'p', b'l', b'a', b'i', b'n', 0xe8, 0x07, 0,
        ];
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksStorage::open(dir.path()).unwrap();
            // Back to what a format-2 binary leaves: its version, no expiry index.
            s.backend().raw_write(vec![version_op(2)], true).unwrap();
            let mut b = WriteBatch::new();
            b.put_object(ok("b", "k"), v2.to_vec());
            s.write(b, true).unwrap();
        }
        let (s, applied) =
            RocksStorage::open_with_migrations(dir.path(), &embedded().unwrap()).unwrap();
        assert_eq!(applied, vec![3, 4, 5, 6, 7]);
        assert_eq!(s.format_version().unwrap(), Some(FORMAT_VERSION));
        let bytes = s.get_object(&ok("b", "k")).unwrap().unwrap();
        assert_eq!(bytes, v2, "the migration rewrites nothing");
        let o = Object::decode(&bytes).unwrap();
        let sibs = o.siblings();
        assert_eq!(sibs.len(), 1);
        assert_eq!(sibs[0].0.actor, Actor::new("n1", 7));
        assert_eq!(sibs[0].1.value.as_ref(), b"hello");
        assert_eq!(sibs[0].1.content_type, "text/plain");
        assert_eq!(sibs[0].1.last_modified_ms, 1000);
        assert_eq!(sibs[0].1.expires_at_ms, None);
        assert!(s.scan_expiry(None, u64::MAX, 10).unwrap().is_empty());
    }

    /// A format-5 data dir gets its tombstone index built once at open: dead keys listed,
    /// live, expiring and damaged ones not, every object left as it was.
    #[test]
    fn a_format_five_data_dir_gets_its_tombstone_index() {
        use crate::storage::Cf;
        use crate::version::{Limits, Object, Sibling, StoredCopy};
        let write = |stored: Option<&Object>, sib: Sibling| {
            Object::update(
                stored,
                &stored.map(Object::context).unwrap_or_default(),
                crate::types::NodeId::from("a"),
                sib,
                ConflictMode::Siblings,
                &Limits::default(),
            )
            .unwrap()
        };
        let live = write(None, Sibling::new(&b"v"[..], "t", 1));
        let dead = write(Some(&live), Sibling::tombstone(2));
        let expiring = write(None, Sibling::new(&b"v"[..], "t", 1).expiring(Some(5)));
        assert!(dead.in_tombstone_index() && !live.in_tombstone_index());
        assert!(!expiring.in_tombstone_index());
        let custody = StoredCopy::new(
            dead.clone(),
            Some(crate::version::Custody {
                epoch: 7,
                incarnation: 1,
            }),
        );
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksStorage::open(dir.path()).unwrap();
            s.backend().raw_write(vec![version_op(5)], true).unwrap();
            let mut b = WriteBatch::new();
            b.put_object(ok("b", "live"), live.encode())
                .put_object(ok("b", "dead"), dead.encode())
                .put_object(ok("b", "dead-custody"), custody.encode())
                .put_object(ok("b", "expiring"), expiring.encode())
                .put_object(ok("b", "damaged"), dead.encode());
            s.write(b, true).unwrap();
            let raw = keys_for_test(&ok("b", "damaged"));
            s.raw_put_for_test(Cf::Objects, &raw, b"\x01bad").unwrap();
        }
        let (s, applied) =
            RocksStorage::open_with_migrations(dir.path(), &embedded().unwrap()).unwrap();
        assert_eq!(applied, vec![6, 7]);
        assert_eq!(
            s.scan_tombstones(None, 10).unwrap(),
            vec![ok("b", "dead"), ok("b", "dead-custody")]
        );
        assert_eq!(s.get_object(&ok("b", "live")).unwrap(), Some(live.encode()));
        // Built once: a second open applies nothing.
        drop(s);
        let (_, applied) =
            RocksStorage::open_with_migrations(dir.path(), &embedded().unwrap()).unwrap();
        assert!(applied.is_empty());
    }

    fn keys_for_test(k: &ObjectKey) -> Vec<u8> {
        crate::storage::keys::encode_object(k).unwrap()
    }

    /// A one-node ring state of node n1, as a node that joined holds it.
    fn found_n1() -> RingState {
        use crate::membership::state::MemberInfo;
        RingState::found(
            "c".into(),
            8,
            3,
            MemberInfo::new(
                "n1".into(),
                "127.0.0.1:1".into(),
                "127.0.0.1:2".into(),
                None,
            ),
        )
    }

    /// `state` in a layout before format 5, with `buckets` as its props entries.
    fn before_5<E>(
        state: &RingState,
        buckets: std::collections::BTreeMap<Vec<u8>, E>,
    ) -> crate::storage::legacy_ring_state::RingStateBefore5<E> {
        crate::storage::legacy_ring_state::RingStateBefore5 {
            cluster_name: state.cluster_name.clone(),
            n_val: state.n_val,
            members: state.members.clone(),
            ring: state.ring.clone(),
            ring_version: state.ring_version,
            ring_author: state.ring_author.clone(),
            previous_ring: state.previous_ring.clone(),
            plan: None,
            buckets,
        }
    }

    /// A format-2 data dir as the previous release left it: stamped 2, with a ring state in
    /// the format-2 layout holding props of one bucket.
    fn format_2_dir_with_bucket_props(dir: &std::path::Path) -> RingState {
        use crate::bucket::Quorum;
        use crate::storage::legacy_ring_state::{PropsEntryV2, PropsV2, RingStateV2};
        use crate::types::NodeId;
        let me = NodeId::from("n1");
        let state = found_n1();
        let props = PropsV2 {
            n: 2,
            r: Quorum::One,
            w: Quorum::All,
            dw: Quorum::Count(1),
            pr: Quorum::Count(0),
            pw: Quorum::Count(0),
            conflict: ConflictMode::Lww,
        };
        let old: RingStateV2 = before_5(
            &state,
            [(
                b"b".to_vec(),
                PropsEntryV2 {
                    props,
                    version: 4,
                    author: me,
                },
            )]
            .into_iter()
            .collect(),
        );
        let list = embedded().unwrap();
        let (s, _) = RocksStorage::open_with_migrations(dir, &list[..2]).unwrap();
        assert_eq!(s.format_version().unwrap(), Some(2));
        let mut b = WriteBatch::new();
        b.put_meta(RING_STATE_META, postcard::to_stdvec(&old).unwrap());
        s.write(b, true).unwrap();
        state
    }

    #[test]
    fn a_format_2_ring_state_with_bucket_props_reads_after_the_upgrade() {
        use crate::bucket::{BucketProps, Quorum};
        let dir = tempfile::tempdir().unwrap();
        let before = format_2_dir_with_bucket_props(dir.path());
        let (s, applied) =
            RocksStorage::open_with_migrations(dir.path(), &embedded().unwrap()).unwrap();
        assert_eq!(applied, vec![3, 4, 5, 6, 7]);
        assert_eq!(s.format_version().unwrap(), Some(FORMAT_VERSION));
        let bytes = s.get_meta(RING_STATE_META).unwrap().unwrap();
        let after: RingState = postcard::from_bytes(&bytes).unwrap();
        let entry = &after.buckets[&b"b"[..]];
        assert_eq!(
            entry.props,
            BucketProps {
                n: 2,
                r: Quorum::One,
                w: Quorum::All,
                dw: Quorum::Count(1),
                conflict: ConflictMode::Lww,
                datatype: None,
                ..BucketProps::with_n(2)
            }
        );
        assert_eq!((entry.version, entry.author.as_str()), (4, "n1"));
        assert_eq!(after.members, before.members);
        assert_eq!(after.ring, before.ring);
        // Reopening runs nothing again and reads the same state.
        drop(s);
        let (s, applied) =
            RocksStorage::open_with_migrations(dir.path(), &embedded().unwrap()).unwrap();
        assert!(applied.is_empty());
        assert_eq!(s.get_meta(RING_STATE_META).unwrap().unwrap(), bytes);
    }

    /// Writes `old` as the ring state of a data dir at format `version`, checks that the
    /// current layout cannot read it, then opens the dir with every migration: the steps
    /// above `version` run and the ring state reads in the current layout.
    fn upgrade_ring_state_from(
        dir: &std::path::Path,
        version: u32,
        old: &impl serde::Serialize,
    ) -> RingState {
        let list = embedded().unwrap();
        {
            let (s, _) =
                RocksStorage::open_with_migrations(dir, &list[..version as usize]).unwrap();
            assert_eq!(s.format_version().unwrap(), Some(version));
            let mut b = WriteBatch::new();
            b.put_meta(RING_STATE_META, postcard::to_stdvec(old).unwrap());
            s.write(b, true).unwrap();
            // The current layout cannot read it: the migration is what makes it readable.
            let bytes = s.get_meta(RING_STATE_META).unwrap().unwrap();
            assert!(postcard::from_bytes::<RingState>(&bytes).is_err());
        }
        let (s, applied) = RocksStorage::open_with_migrations(dir, &list).unwrap();
        let expected: Vec<u32> = (version + 1..=FORMAT_VERSION).collect();
        assert_eq!(applied, expected);
        assert_eq!(s.format_version().unwrap(), Some(FORMAT_VERSION));
        let bytes = s.get_meta(RING_STATE_META).unwrap().unwrap();
        postcard::from_bytes(&bytes).unwrap()
    }

    /// A format-4 data dir as the previous release left it: its ring state in the format-4
    /// layout (no security state) opens at format 5 with everything kept and no users.
    #[test]
    fn a_format_4_ring_state_reads_after_the_upgrade() {
        use crate::bucket::BucketProps;
        use crate::membership::state::PropsEntry;
        use crate::storage::legacy_ring_state::RingStateV4;
        use crate::types::NodeId;
        let dir = tempfile::tempdir().unwrap();
        let me = NodeId::from("n1");
        let state = found_n1();
        let entry = PropsEntry {
            props: BucketProps::with_n(2),
            version: 3,
            author: me,
        };
        let old: RingStateV4 = before_5(
            &state,
            [(b"b".to_vec(), entry.clone())].into_iter().collect(),
        );
        let after = upgrade_ring_state_from(dir.path(), 4, &old);
        assert_eq!(after.buckets[&b"b"[..]], entry);
        assert_eq!(after.members, state.members);
        assert_eq!(after.ring, state.ring);
        assert!(after.security.never_had_users());
    }

    /// A format-6 data dir as the previous release left it, with a join plan pending in the
    /// format-6 layout (no `staged` flag): it opens at format 7 with the plan applying as
    /// before and everything else kept.
    #[test]
    fn a_format_6_ring_state_with_a_pending_plan_reads_after_the_upgrade() {
        use crate::membership::state::MemberInfo;
        use crate::storage::legacy_ring_state::{PlanBefore7, RingStateV6};
        let dir = tempfile::tempdir().unwrap();
        let mut state = found_n1();
        state
            .add_member(MemberInfo::new(
                "n2".into(),
                "127.0.0.1:3".into(),
                "127.0.0.1:4".into(),
                None,
            ))
            .unwrap();
        assert!(state.claimant_step(&"n1".into()));
        let plan = state.plan.clone().expect("a join plan");
        assert!(!plan.transfers.is_empty() && !plan.staged);
        let old = RingStateV6 {
            cluster_name: state.cluster_name.clone(),
            n_val: state.n_val,
            members: state.members.clone(),
            ring: state.ring.clone(),
            ring_version: state.ring_version,
            ring_author: state.ring_author.clone(),
            previous_ring: state.previous_ring.clone(),
            plan: Some(PlanBefore7 {
                id: plan.id,
                target: plan.target.clone(),
                transfers: plan.transfers.clone(),
            }),
            buckets: state.buckets.clone(),
            security: state.security.clone(),
        };
        let after = upgrade_ring_state_from(dir.path(), 6, &old);
        assert_eq!(after, state, "the same state, its plan applying as before");
    }

    #[test]
    fn an_unreadable_format_2_ring_state_stops_the_upgrade() {
        let s = MemoryStorage::new();
        let list = embedded().unwrap();
        s.backend().raw_write(vec![version_op(2)], true).unwrap();
        let mut b = WriteBatch::new();
        b.put_meta(RING_STATE_META, vec![0xff; 3]);
        s.write(b, true).unwrap();
        assert!(matches!(
            run(s.backend(), &list),
            Err(StorageError::Migration(m)) if m.contains("format-2 layout")
        ));
        assert_eq!(s.format_version().unwrap(), Some(2));
        // Without a ring state (a node that never joined) there is nothing to rewrite.
        let empty = MemoryStorage::new();
        assert_eq!(empty.format_version().unwrap(), Some(FORMAT_VERSION));
    }

    #[test]
    fn reserved_meta_names_are_refused() {
        let s = MemoryStorage::new();
        let mut b = WriteBatch::new();
        b.put_meta(VERSION_KEY, 9u32.to_be_bytes().to_vec());
        assert!(matches!(s.write(b, false), Err(StorageError::Invalid(_))));
        assert_eq!(s.format_version().unwrap(), Some(FORMAT_VERSION));
    }
}
