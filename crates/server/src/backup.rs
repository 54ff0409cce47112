//! Online backup of one node and offline restore of a data dir from it.
//!
//! A backup is a directory `DIR` on the node's own file system holding `DIR/db` (a RocksDB
//! checkpoint: every column family at one instant, taken while the node serves) and
//! `DIR/backup.json` ([`BackupManifest`]). A restore, with the node stopped, copies `DIR/db`
//! into `DATA/db` and removes the incarnation record from the copy, so the node starts a new
//! incarnation: every custody in the snapshot is void and the next write of each key takes a
//! fresh write identity. Without that, the node would extend identities it had already used
//! after the snapshot for other writes (basho/riak_kv#679).
//!
//! A snapshot older than its tombstone grace is refused (unless forced): it may hold live
//! values whose deletes the other replicas have since reaped, and nothing would remain to
//! delete them again.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use utoipa::ToSchema;

/// The layout version of a backup directory this binary writes and restores.
pub const BACKUP_FORMAT_VERSION: u32 = 1;
/// The manifest file inside a backup directory.
pub const MANIFEST_FILE: &str = "backup.json";
/// The checkpoint inside a backup directory (and inside a data dir).
pub const DB_DIR: &str = "db";

/// `DIR/backup.json`: what a backup holds and when it was taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupManifest {
    /// The backup layout version (1).
    pub format_version: u32,
    /// The node whose data this is; a restore keeps its node id record.
    pub node_id: String,
    pub cluster_name: String,
    /// The on-disk storage format of `db`.
    pub storage_format_version: u32,
    /// The node's ring version when the snapshot was taken.
    pub ring_version: u64,
    /// The node's clock just before the snapshot, ms since the Unix epoch.
    pub snapshot_ms: u64,
    /// The node's `--tombstone-grace-ms`: how old a snapshot may be when restored.
    pub tombstone_grace_ms: u64,
    /// The RiftKV version that wrote the backup.
    pub riftkv_version: String,
}

/// Body of `POST /v1/admin/backup`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// An absolute directory on the node's file system: absent or empty; created.
    pub out: String,
}

/// Why a backup or restore was refused or failed; each renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The request names a directory the backup cannot use (the caller's mistake).
    #[error("{0}")]
    BadTarget(String),
    /// A snapshot that must not be restored as it is.
    #[error("{0}")]
    Refused(String),
    /// The file system or the store failed.
    #[error("{0}")]
    Io(String),
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> BackupError {
    BackupError::Io(format!("{what} {}: {e}", path.display()))
}

/// Whether a directory is absent, or present and empty.
fn absent_or_empty(path: &Path) -> Result<bool, BackupError> {
    match std::fs::read_dir(path) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io_err("cannot read", path, e)),
    }
}

/// Checks a backup target and creates it: absolute, and absent or an empty directory.
/// Returns whether it was created (so a failed backup removes only what it made).
pub fn prepare_out_dir(out: &str) -> Result<bool, BackupError> {
    let path = Path::new(out);
    if out.is_empty() || !path.is_absolute() {
        return Err(BackupError::BadTarget(format!(
            "out must be an absolute path on the node's file system, not {out:?}"
        )));
    }
    if path.exists() {
        if !path.is_dir() {
            return Err(BackupError::BadTarget(format!(
                "out {out} exists and is not a directory"
            )));
        }
        let empty = absent_or_empty(path).map_err(|e| BackupError::BadTarget(e.to_string()))?;
        if !empty {
            return Err(BackupError::BadTarget(format!(
                "out {out} exists and is not empty; a backup goes into a new directory"
            )));
        }
        return Ok(false);
    }
    std::fs::create_dir_all(path)
        .map_err(|e| BackupError::BadTarget(format!("cannot create out {out}: {e}")))?;
    Ok(true)
}

/// Writes `bytes` to `path` durably (temporary file, fsync, rename).
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_err("cannot create", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err("cannot write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err("cannot rename", &tmp, e))
}

/// Takes a backup of `storage` into `out` (see [`prepare_out_dir`]), recording `manifest`.
/// Blocking: run it off the async workers. Removes what it wrote when it fails.
pub fn take(
    storage: &dyn riftkv_core::storage::Storage,
    out: &str,
    manifest: &BackupManifest,
) -> Result<(), BackupError> {
    let created = prepare_out_dir(out)?;
    let dir = PathBuf::from(out);
    let result = (|| {
        let db = dir.join(DB_DIR);
        storage
            .checkpoint(&db)
            .map_err(|e| BackupError::Io(format!("checkpoint into {}: {e}", db.display())))?;
        let json = serde_json::to_vec_pretty(manifest)
            .map_err(|e| BackupError::Io(format!("cannot encode the manifest: {e}")))?;
        write_durably(&dir.join(MANIFEST_FILE), &json)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(dir.join(DB_DIR));
        let _ = std::fs::remove_file(dir.join(MANIFEST_FILE));
        let _ = std::fs::remove_file(dir.join(MANIFEST_FILE).with_extension("tmp"));
        if created {
            let _ = std::fs::remove_dir(&dir);
        }
    }
    result
}

/// Reads and checks `DIR/backup.json`.
pub fn read_manifest(from: &Path) -> Result<BackupManifest, BackupError> {
    let path = from.join(MANIFEST_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::Refused(format!(
                "{} has no {MANIFEST_FILE}: not a RiftKV backup (or an unfinished one)",
                from.display()
            )));
        }
        Err(e) => return Err(io_err("cannot read", &path, e)),
    };
    // The version first, so a newer layout is reported as such rather than as garbage.
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| BackupError::Refused(format!("{} is not valid JSON: {e}", path.display())))?;
    let version = v.get("format_version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(BACKUP_FORMAT_VERSION)) {
        return Err(BackupError::Refused(format!(
            "{} has backup format {}, this binary restores format {BACKUP_FORMAT_VERSION}",
            path.display(),
            version.map_or_else(|| "unknown".to_string(), |v| v.to_string())
        )));
    }
    serde_json::from_value(v).map_err(|e| {
        BackupError::Refused(format!("{} is not a backup manifest: {e}", path.display()))
    })
}

/// How old a snapshot is by this machine's clock (0 if it seems to come from the future).
pub fn snapshot_age_ms(m: &BackupManifest, now_ms: u64) -> u64 {
    now_ms.saturating_sub(m.snapshot_ms)
}

/// The key safety rule of a restore: a snapshot older than its tombstone grace may hold live
/// values whose deletes were reaped on the other replicas since, and would bring them back.
/// `Ok(Some(warning))` when `force` overrides it.
pub fn check_age(
    m: &BackupManifest,
    now_ms: u64,
    force: bool,
) -> Result<Option<String>, BackupError> {
    let age = snapshot_age_ms(m, now_ms);
    if age <= m.tombstone_grace_ms {
        return Ok(None);
    }
    let why = format!(
        "the snapshot is {} s old, older than its tombstone grace ({} s): it may hold values \
         deleted since whose tombstones the other replicas have reaped, and restoring it would \
         bring them back",
        age / 1000,
        m.tombstone_grace_ms / 1000
    );
    if force {
        Ok(Some(format!(
            "WARNING: --force: {why}; deleted values may reappear"
        )))
    } else {
        Err(BackupError::Refused(format!(
            "{why} (--force restores it anyway)"
        )))
    }
}

/// A data dir a restore may write into: its `db` absent or an empty directory.
pub fn check_target(data_dir: &Path) -> Result<(), BackupError> {
    let db = data_dir.join(DB_DIR);
    if db.exists() && (!db.is_dir() || !absent_or_empty(&db)?) {
        return Err(BackupError::Refused(format!(
            "{} already holds a database; restore into a data dir without one (move it away \
             first; the node must be stopped)",
            db.display()
        )));
    }
    Ok(())
}

/// Copies a directory tree (a checkpoint: files and, possibly, directories).
#[cfg(feature = "rocksdb")]
fn copy_tree(from: &Path, to: &Path) -> Result<u64, BackupError> {
    std::fs::create_dir_all(to).map_err(|e| io_err("cannot create", to, e))?;
    let mut bytes = 0u64;
    for entry in std::fs::read_dir(from).map_err(|e| io_err("cannot read", from, e))? {
        let entry = entry.map_err(|e| io_err("cannot read", from, e))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| io_err("cannot read", &src, e))?;
        if kind.is_dir() {
            bytes += copy_tree(&src, &dst)?;
        } else {
            bytes += std::fs::copy(&src, &dst).map_err(|e| io_err("cannot copy", &src, e))?;
        }
    }
    Ok(bytes)
}

/// What a restore did.
#[derive(Clone, Debug)]
pub struct Restored {
    pub manifest: BackupManifest,
    pub bytes: u64,
    /// The `--force` warning, when the age rule was overridden.
    pub warning: Option<String>,
}

/// Restores `DATA/db` from the backup in `from`, with the node stopped: checks the manifest,
/// the snapshot's age (by `now_ms`) and the target, copies the checkpoint, and clears its
/// incarnation record so the node's next start is a new incarnation. The copy is made under
/// a temporary name and renamed into place last, so a failed restore leaves no `db`.
#[cfg(feature = "rocksdb")]
pub fn restore(
    from: &Path,
    data_dir: &Path,
    force: bool,
    now_ms: u64,
) -> Result<Restored, BackupError> {
    use riftkv_cluster::node::META_NODE_ID;
    use riftkv_cluster::node::incarnation::META_INCARNATION;
    use riftkv_core::storage::{RocksStorage, Storage, WriteBatch};

    let manifest = read_manifest(from)?;
    let src = from.join(DB_DIR);
    if !src.is_dir() {
        return Err(BackupError::Refused(format!(
            "{} is missing: the backup has no database",
            src.display()
        )));
    }
    if manifest.storage_format_version > riftkv_core::storage::FORMAT_VERSION {
        return Err(BackupError::Refused(format!(
            "the backup holds on-disk format {}, this binary supports up to {}",
            manifest.storage_format_version,
            riftkv_core::storage::FORMAT_VERSION
        )));
    }
    let warning = check_age(&manifest, now_ms, force)?;
    check_target(data_dir)?;

    let db = data_dir.join(DB_DIR);
    let staging = data_dir.join(format!("{DB_DIR}.restoring"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| io_err("cannot remove", &staging, e))?;
    }
    let result = (|| {
        let bytes = copy_tree(&src, &staging)?;
        let store = RocksStorage::open(&staging)
            .map_err(|e| io_err("cannot open the restored database in", &staging, e))?;
        let fail = |e: riftkv_core::storage::StorageError| {
            io_err("cannot prepare the restored database in", &staging, e)
        };
        let mut batch = WriteBatch::new();
        // No incarnation record: the next start is a new incarnation (`node::incarnation`).
        batch.delete_meta(META_INCARNATION);
        if store.get_meta(META_NODE_ID).map_err(fail)?.is_none() {
            batch.put_meta(META_NODE_ID, manifest.node_id.as_bytes().to_vec());
        }
        store.write(batch, true).map_err(fail)?;
        store.flush().map_err(fail)?;
        drop(store);
        if db.exists() {
            // An empty directory (checked above).
            std::fs::remove_dir(&db).map_err(|e| io_err("cannot remove", &db, e))?;
        }
        std::fs::rename(&staging, &db).map_err(|e| io_err("cannot rename", &staging, e))?;
        Ok(bytes)
    })();
    match result {
        Ok(bytes) => Ok(Restored {
            manifest,
            bytes,
            warning,
        }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(snapshot_ms: u64, grace_ms: u64) -> BackupManifest {
        BackupManifest {
            format_version: BACKUP_FORMAT_VERSION,
            node_id: "n1".into(),
            cluster_name: "c".into(),
            storage_format_version: riftkv_core::storage::FORMAT_VERSION,
            ring_version: 3,
            snapshot_ms,
            tombstone_grace_ms: grace_ms,
            riftkv_version: "0".into(),
        }
    }

    #[test]
    fn the_age_rule_refuses_a_snapshot_older_than_its_grace_unless_forced() {
        let m = manifest(1_000_000, 600_000);
        assert!(check_age(&m, 1_000_000, false).unwrap().is_none());
        assert!(check_age(&m, 1_600_000, false).unwrap().is_none());
        // From the future (clock skew): age 0.
        assert!(check_age(&m, 10, false).unwrap().is_none());
        let e = check_age(&m, 1_600_001, false).unwrap_err();
        assert!(matches!(e, BackupError::Refused(_)));
        assert!(e.to_string().contains("tombstone grace"), "{e}");
        assert!(e.to_string().contains("--force"), "{e}");
        let w = check_age(&m, 5_000_000, true).unwrap().unwrap();
        assert!(w.starts_with("WARNING"), "{w}");
    }

    #[test]
    fn out_dir_must_be_absolute_and_new_or_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let rel = prepare_out_dir("relative/dir").unwrap_err();
        assert!(matches!(rel, BackupError::BadTarget(_)));
        assert!(matches!(
            prepare_out_dir(""),
            Err(BackupError::BadTarget(_))
        ));
        let fresh = tmp.path().join("a/b");
        assert!(prepare_out_dir(fresh.to_str().unwrap()).unwrap());
        assert!(fresh.is_dir());
        // Existing and empty: accepted, not created.
        assert!(!prepare_out_dir(fresh.to_str().unwrap()).unwrap());
        std::fs::write(fresh.join("x"), b"x").unwrap();
        let full = prepare_out_dir(fresh.to_str().unwrap()).unwrap_err();
        assert!(full.to_string().contains("not empty"), "{full}");
        let file = fresh.join("x");
        let e = prepare_out_dir(file.to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        let under_file = file.join("sub");
        let e = prepare_out_dir(under_file.to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains("cannot create"), "{e}");
    }

    #[test]
    fn a_manifest_must_exist_and_have_this_format() {
        let tmp = tempfile::tempdir().unwrap();
        let e = read_manifest(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("no backup.json"), "{e}");
        let m = manifest(1, 2);
        std::fs::write(
            tmp.path().join(MANIFEST_FILE),
            serde_json::to_vec(&m).unwrap(),
        )
        .unwrap();
        assert_eq!(read_manifest(tmp.path()).unwrap(), m);
        let mut v = serde_json::to_value(&m).unwrap();
        v["format_version"] = 2.into();
        std::fs::write(
            tmp.path().join(MANIFEST_FILE),
            serde_json::to_vec(&v).unwrap(),
        )
        .unwrap();
        let e = read_manifest(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("backup format 2"), "{e}");
    }

    #[test]
    fn a_target_with_a_database_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        check_target(tmp.path()).unwrap();
        std::fs::create_dir(tmp.path().join("db")).unwrap();
        check_target(tmp.path()).unwrap();
        std::fs::write(tmp.path().join("db/CURRENT"), b"x").unwrap();
        let e = check_target(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("already holds a database"), "{e}");
    }

    /// The whole path on real RocksDB: backup, restore, and the restored node's first start
    /// is a new incarnation with its node id kept.
    #[cfg(feature = "rocksdb")]
    #[test]
    fn restore_copies_the_snapshot_and_voids_the_incarnation() {
        use riftkv_cluster::node::META_NODE_ID;
        use riftkv_cluster::node::incarnation::{self, Start};
        use riftkv_core::storage::{ObjectKey, RocksStorage, Storage, WriteBatch};

        let tmp = tempfile::tempdir().unwrap();
        let live = RocksStorage::open(&tmp.path().join("live/db")).unwrap();
        let mut b = WriteBatch::new();
        b.put_meta(META_NODE_ID, b"n1".to_vec());
        b.put_object(
            ObjectKey::new(1, b"b".to_vec(), b"k".to_vec()),
            b"v".to_vec(),
        );
        live.write(b, true).unwrap();
        let (inc, _) = incarnation::begin(&live, Some("boot")).unwrap();

        let out = tmp.path().join("backup");
        let m = manifest(1_000, 600_000);
        take(&live, out.to_str().unwrap(), &m).unwrap();
        assert!(out.join("db").is_dir());
        assert_eq!(read_manifest(&out).unwrap(), m);
        // A second backup into the same dir is refused.
        assert!(matches!(
            take(&live, out.to_str().unwrap(), &m),
            Err(BackupError::BadTarget(_))
        ));

        let data = tmp.path().join("data");
        // Too old, then into an occupied data dir.
        assert!(matches!(
            restore(&out, &data, false, 1_000 + 600_001),
            Err(BackupError::Refused(_))
        ));
        assert!(
            !data.join("db").exists(),
            "a refused restore writes nothing"
        );
        let r = restore(&out, &data, false, 2_000).unwrap();
        assert!(r.warning.is_none());
        assert!(r.bytes > 0);
        assert!(matches!(
            restore(&out, &data, false, 2_000),
            Err(BackupError::Refused(_))
        ));

        let s = RocksStorage::open(&data.join("db")).unwrap();
        assert_eq!(
            s.get_object(&ObjectKey::new(1, b"b".to_vec(), b"k".to_vec()))
                .unwrap(),
            Some(b"v".to_vec())
        );
        assert_eq!(s.get_meta(META_NODE_ID).unwrap(), Some(b"n1".to_vec()));
        // The same boot would keep the snapshot's incarnation; the restored copy must not.
        let (next, why) = incarnation::begin(&s, Some("boot")).unwrap();
        assert_eq!(why, Start::NewEmpty);
        assert_ne!(next, inc);
    }
}
