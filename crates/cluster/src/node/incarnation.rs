//! The node incarnation: which write identities this node can still vouch for.
//!
//! A node holds custody of a key's write identity only within one incarnation (see
//! `version::identity`). A new incarnation starts whenever the node may have lost writes it had
//! acknowledged:
//! - the data dir holds no incarnation (first start, a wiped or replaced disk, or data written
//!   before incarnations existed);
//! - the previous run did not stop cleanly *and* the machine rebooted since (or the boot cannot
//!   be told): unsynced WAL writes may have died with the OS page cache.
//!
//! A process crash on the same boot keeps the incarnation: RocksDB hands every write to the OS
//! before acknowledging it, so a killed process loses nothing the kernel had. A clean stop syncs
//! the WAL before marking itself clean.

use riftkv_core::storage::{Storage, StorageError, WriteBatch};
use serde::{Deserialize, Serialize};

/// Meta key of the incarnation record.
pub const META_INCARNATION: &str = "incarnation";

/// What the meta area remembers of the last run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncarnationRecord {
    /// Random, never 0.
    pub id: u64,
    /// The boot the record was written on (Linux `boot_id`), when known.
    pub boot_id: Option<String>,
    /// True only between a clean stop and the next start.
    pub clean: bool,
}

/// Why a start keeps or replaces the incarnation (logged, and asserted by tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Clean stop, or a process crash on the same boot: custody stays valid.
    Keep,
    /// No record: first start, wiped data dir, or older data.
    NewEmpty,
    /// Unclean stop across a reboot (or an unknown boot): unsynced writes may be gone.
    NewAfterCrash,
    /// The record itself could not be read.
    NewDamaged,
}

/// The pure decision: given what is stored and the current boot, keep or replace.
pub fn decide(stored: Option<&IncarnationRecord>, boot_id: Option<&str>) -> Start {
    let Some(r) = stored else {
        return Start::NewEmpty;
    };
    if r.id == 0 {
        return Start::NewDamaged;
    }
    if r.clean {
        return Start::Keep;
    }
    match (r.boot_id.as_deref(), boot_id) {
        (Some(a), Some(b)) if a == b => Start::Keep,
        _ => Start::NewAfterCrash,
    }
}

/// The current boot's id on Linux; `None` elsewhere (then every unclean stop counts as a crash).
pub fn current_boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Reads the record, decides, and durably records the running incarnation (synced, before the
/// node serves anything). Returns the incarnation id and the decision. A node makes the same
/// choice with [`choose`] and writes the record through its persister thread.
pub fn begin(storage: &dyn Storage, boot_id: Option<&str>) -> Result<(u64, Start), StorageError> {
    let (record, start) = choose(storage, boot_id)?;
    write(storage, &record)?;
    Ok((record.id, start))
}

/// Reads the record and decides: the record of the running incarnation (not clean) to write
/// before the node serves anything, and why it was kept or replaced.
pub fn choose(
    storage: &dyn Storage,
    boot_id: Option<&str>,
) -> Result<(IncarnationRecord, Start), StorageError> {
    let stored = match storage.get_meta(META_INCARNATION) {
        Ok(Some(bytes)) => postcard::from_bytes::<IncarnationRecord>(&bytes).ok(),
        Ok(None) => None,
        Err(StorageError::Corrupt { .. }) => None,
        Err(e) => return Err(e),
    };
    let mut start = decide(stored.as_ref(), boot_id);
    if start == Start::NewEmpty && storage.get_meta(META_INCARNATION)?.is_some() {
        start = Start::NewDamaged;
    }
    let id = match (start, &stored) {
        (Start::Keep, Some(r)) => r.id,
        _ => riftkv_core::version::identity::fresh_epoch(),
    };
    let record = IncarnationRecord {
        id,
        boot_id: boot_id.map(str::to_string),
        clean: false,
    };
    Ok((record, start))
}

/// Marks a clean stop. Call only after every write of the run is synced to disk.
pub fn end_clean(
    storage: &dyn Storage,
    id: u64,
    boot_id: Option<&str>,
) -> Result<(), StorageError> {
    write(
        storage,
        &IncarnationRecord {
            id,
            boot_id: boot_id.map(str::to_string),
            clean: true,
        },
    )
}

/// The stored form of a record.
pub fn encode(r: &IncarnationRecord) -> Result<Vec<u8>, StorageError> {
    postcard::to_stdvec(r).map_err(|e| StorageError::Invalid(e.to_string()))
}

fn write(storage: &dyn Storage, r: &IncarnationRecord) -> Result<(), StorageError> {
    let bytes = encode(r)?;
    let mut batch = WriteBatch::default();
    batch.put_meta(META_INCARNATION, bytes);
    storage.write(batch, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use riftkv_core::storage::MemoryStorage;

    fn rec(id: u64, boot: Option<&str>, clean: bool) -> IncarnationRecord {
        IncarnationRecord {
            id,
            boot_id: boot.map(str::to_string),
            clean,
        }
    }

    #[test]
    fn decision_table() {
        assert_eq!(decide(None, Some("b1")), Start::NewEmpty);
        assert_eq!(
            decide(Some(&rec(7, Some("b1"), true)), Some("b2")),
            Start::Keep
        );
        assert_eq!(
            decide(Some(&rec(7, Some("b1"), false)), Some("b1")),
            Start::Keep
        );
        assert_eq!(
            decide(Some(&rec(7, Some("b1"), false)), Some("b2")),
            Start::NewAfterCrash
        );
        assert_eq!(
            decide(Some(&rec(7, None, false)), Some("b1")),
            Start::NewAfterCrash
        );
        assert_eq!(
            decide(Some(&rec(7, Some("b1"), false)), None),
            Start::NewAfterCrash
        );
        assert_eq!(
            decide(Some(&rec(0, Some("b1"), true)), Some("b1")),
            Start::NewDamaged
        );
    }

    #[test]
    fn begin_keeps_across_crashes_on_one_boot_and_renews_after_a_reboot_or_wipe() {
        let s = MemoryStorage::new();
        let (a, why) = begin(&s, Some("boot-1")).unwrap();
        assert_eq!(why, Start::NewEmpty);
        // killed, restarted on the same boot
        let (b, why) = begin(&s, Some("boot-1")).unwrap();
        assert_eq!((b, why), (a, Start::Keep));
        // clean stop, restart after a reboot: still kept
        end_clean(&s, b, Some("boot-1")).unwrap();
        let (c, why) = begin(&s, Some("boot-2")).unwrap();
        assert_eq!((c, why), (a, Start::Keep));
        // crash, then a reboot: renewed
        let (d, why) = begin(&s, Some("boot-3")).unwrap();
        assert_eq!(why, Start::NewAfterCrash);
        assert_ne!(d, a);
        // a wiped disk: renewed
        let fresh = MemoryStorage::new();
        let (e, why) = begin(&fresh, Some("boot-3")).unwrap();
        assert_eq!(why, Start::NewEmpty);
        assert_ne!(e, d);
    }

    #[test]
    fn an_unreadable_record_renews() {
        let s = MemoryStorage::new();
        let mut batch = WriteBatch::default();
        batch.put_meta(META_INCARNATION, vec![0xFF; 3]);
        s.write(batch, true).unwrap();
        let (id, why) = begin(&s, Some("b")).unwrap();
        assert_eq!(why, Start::NewDamaged);
        assert_ne!(id, 0);
    }
}
