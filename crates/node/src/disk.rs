//! A node's stable storage: named records that survive the node's crashes and restarts. The
//! simulator keeps each node's disk outside the node, as it keeps the lease store's keyspace,
//! so a restart finds what the last incarnation wrote; `wipe` models a lost disk.
//!
//! A write lands in the page cache: the process reads it back at once, and a crash of the
//! process keeps it, but a power failure loses every write not yet [`Disk::sync`]ed. Each record
//! is stored with a checksum, so a damaged one reads as missing (and says so) rather than as
//! garbage.

use crate::report::emit;
use crate::sync::lock;
use fleet_core::timeline::ShellEvent;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The record a master's replicated commands and config live in (a
/// [`Snapshot`](fleet_core::cluster::Snapshot) record).
pub const LEDGER: &str = "ledger";

/// One record as stored: its bytes and their checksum.
#[derive(Clone)]
struct Stored {
    bytes: Vec<u8>,
    sum: u64,
}

impl Stored {
    fn new(bytes: Vec<u8>) -> Stored {
        let sum = checksum(&bytes);
        Stored { bytes, sum }
    }

    fn is_whole(&self) -> bool {
        checksum(&self.bytes) == self.sum
    }
}

/// FNV-1a over the bytes: enough to catch damage, which is all it is for.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Default)]
struct Records {
    /// On the platter.
    synced: BTreeMap<String, Stored>,
    /// Written since the last sync: read back first, lost on a power failure.
    unsynced: BTreeMap<String, Stored>,
    /// Something was synced to it once: wiped since or not, it is no new disk.
    used: bool,
    /// Where a deployed node keeps its records; `None` in the simulator, which keeps them here.
    dir: Option<PathBuf>,
}

/// Cheap to clone; every clone is the same disk.
#[derive(Clone, Default)]
pub struct Disk(Arc<Mutex<Records>>);

impl Disk {
    fn lock(&self) -> MutexGuard<'_, Records> {
        lock(&self.0)
    }

    /// The record as last written; `None` when there is none, or when it is damaged: then it is
    /// reported as a `bad_record` and discarded, as good as lost, so it is reported once.
    pub fn read(&self, record: &str) -> Option<Vec<u8>> {
        let mut records = self.lock();
        let stored = (records.unsynced.get(record)).or_else(|| records.synced.get(record))?;
        if stored.is_whole() {
            return Some(stored.bytes.clone());
        }
        records.unsynced.remove(record);
        records.synced.remove(record);
        drop(records);
        emit(ShellEvent::BadRecord {
            record: record.to_string(),
            error: "checksum mismatch: the record is damaged".to_string(),
        });
        None
    }

    /// A deployed node's disk: the records in directory `dir` (created if missing), each in a
    /// file of its own. A file that is not a record's is left alone.
    pub fn open(dir: &Path) -> io::Result<Disk> {
        std::fs::create_dir_all(dir)?;
        let mut synced = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(record) = path
                .file_name()
                .and_then(|name| record_of_file(name.to_str()?))
            else {
                continue;
            };
            let bytes = std::fs::read(&path)?;
            // A file cut short is damaged: its checksum will not match what is left.
            let (sum, bytes) = match bytes.split_first_chunk::<8>() {
                Some((sum, rest)) => (u64::from_le_bytes(*sum), rest.to_vec()),
                None => (!checksum(&bytes), bytes),
            };
            synced.insert(record, Stored { bytes, sum });
        }
        Ok(Disk(Arc::new(Mutex::new(Records {
            used: !synced.is_empty(),
            synced,
            unsynced: BTreeMap::new(),
            dir: Some(dir.to_path_buf()),
        }))))
    }

    /// Replaces `record`; it survives a crash of the process, and a power failure once synced.
    ///
    /// # Panics
    /// When a deployed node cannot write its directory: it must not answer as if it had.
    pub fn write(&self, record: &str, bytes: Vec<u8>) {
        let mut records = self.lock();
        let stored = Stored::new(bytes);
        if let Some(dir) = &records.dir {
            if let Err(error) = write_file(dir, record, &stored) {
                panic!("disk {}: cannot write {record:?}: {error}", dir.display());
            }
        }
        records.unsynced.insert(record.to_string(), stored);
    }

    /// Makes every write so far survive a power failure.
    ///
    /// # Panics
    /// When a deployed node cannot flush its directory to the device.
    pub fn sync(&self) {
        let mut records = self.lock();
        let written = std::mem::take(&mut records.unsynced);
        if let Some(dir) = &records.dir {
            if let Err(error) = sync_files(dir, written.keys()) {
                panic!("disk {}: cannot sync: {error}", dir.display());
            }
        }
        records.used |= !written.is_empty();
        records.synced.extend(written);
    }

    /// Whether anything was ever synced to it: a node whose first start ended before it did
    /// finds a new disk, not a lost one.
    pub fn is_used(&self) -> bool {
        self.lock().used
    }

    /// Erases everything, as a replaced disk would; returns how many records there were.
    pub fn wipe(&self) -> usize {
        let mut records = self.lock();
        let synced = std::mem::take(&mut records.synced);
        let unsynced = std::mem::take(&mut records.unsynced);
        let erased = unsynced
            .keys()
            .filter(|key| !synced.contains_key(*key))
            .count();
        erased + synced.len()
    }

    /// Loses every write not synced, as a power failure does; returns how many.
    pub fn power_fail(&self) -> usize {
        std::mem::take(&mut self.lock().unsynced).len()
    }

    /// Damages every record (one byte of each flipped); returns how many.
    pub fn corrupt(&self) -> usize {
        let mut records = self.lock();
        let records = &mut *records;
        let mut damaged = 0;
        for stored in records
            .synced
            .values_mut()
            .chain(records.unsynced.values_mut())
        {
            let middle = stored.bytes.len() / 2;
            match stored.bytes.get_mut(middle) {
                Some(byte) => *byte ^= 0x5a,
                None => stored.sum ^= 1,
            }
            damaged += 1;
        }
        damaged
    }
}

/// A record's file: its name with `%` and `/` escaped, then `.rec`.
fn file_of_record(record: &str) -> String {
    format!("{}.rec", record.replace('%', "%25").replace('/', "%2F"))
}

fn record_of_file(file: &str) -> Option<String> {
    let name = file.strip_suffix(".rec")?;
    Some(name.replace("%2F", "/").replace("%25", "%"))
}

/// Replaces the record's file: its checksum, then its bytes, written aside and renamed over it.
fn write_file(dir: &Path, record: &str, stored: &Stored) -> io::Result<()> {
    let path = dir.join(file_of_record(record));
    let aside = path.with_extension("rec.new");
    let mut file = std::fs::File::create(&aside)?;
    file.write_all(&stored.sum.to_le_bytes())?;
    file.write_all(&stored.bytes)?;
    std::fs::rename(&aside, &path)
}

/// Flushes the files of `records`, and the directory that names them, to the device.
fn sync_files<'a>(dir: &Path, records: impl Iterator<Item = &'a String>) -> io::Result<()> {
    for record in records {
        std::fs::File::open(dir.join(file_of_record(record)))?.sync_all()?;
    }
    std::fs::File::open(dir)?.sync_all()
}

impl fmt::Debug for Disk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let records = self.lock();
        let synced: Vec<&String> = records.synced.keys().collect();
        let unsynced: Vec<&String> = records.unsynced.keys().collect();
        f.debug_struct("Disk")
            .field("synced", &synced)
            .field("unsynced", &unsynced)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployed_disk_keeps_its_records_in_files_across_restarts() {
        let dir = std::env::temp_dir().join(format!("fleet-disk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let disk = Disk::open(&dir).unwrap();
        assert!(!disk.is_used(), "a new directory is a new disk");
        disk.write("raft/hard_state", b"{\"term\":3}".to_vec());
        disk.write("ledger", b"L".to_vec());
        disk.sync();
        std::fs::write(dir.join("notes.txt"), "an operator's file").unwrap();
        let again = Disk::open(&dir).unwrap();
        assert!(again.is_used());
        assert_eq!(
            again.read("raft/hard_state"),
            Some(b"{\"term\":3}".to_vec())
        );
        assert_eq!(again.read("ledger"), Some(b"L".to_vec()));
        // A file damaged on the device reads as missing.
        let file = dir.join("ledger.rec");
        let mut bytes = std::fs::read(&file).unwrap();
        *bytes.last_mut().unwrap() ^= 0x5a;
        std::fs::write(&file, bytes).unwrap();
        assert_eq!(Disk::open(&dir).unwrap().read("ledger"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn records_outlive_a_clone_and_a_wipe_erases_them() {
        let disk = Disk::default();
        let same = disk.clone();
        disk.write("raft/hard_state", b"{}".to_vec());
        assert_eq!(same.read("raft/hard_state"), Some(b"{}".to_vec()));
        same.wipe();
        assert_eq!(disk.read("raft/hard_state"), None);
    }

    #[test]
    fn a_power_failure_loses_what_was_not_synced_and_keeps_what_was() {
        let disk = Disk::default();
        disk.write("vote", b"1".to_vec());
        disk.sync();
        disk.write("vote", b"2".to_vec());
        assert_eq!(
            disk.read("vote"),
            Some(b"2".to_vec()),
            "the process reads its write"
        );
        assert_eq!(disk.power_fail(), 1);
        assert_eq!(
            disk.read("vote"),
            Some(b"1".to_vec()),
            "the synced one is back"
        );
        assert_eq!(disk.power_fail(), 0, "nothing left to lose");
    }

    #[test]
    fn a_damaged_record_reads_as_missing_never_as_garbage() {
        let disk = Disk::default();
        disk.write("ledger", b"{\"index\":7}".to_vec());
        disk.write("empty", Vec::new());
        disk.sync();
        assert_eq!(disk.corrupt(), 2);
        assert_eq!(disk.read("ledger"), None);
        assert_eq!(disk.read("empty"), None);
        disk.write("ledger", b"{}".to_vec());
        assert_eq!(
            disk.read("ledger"),
            Some(b"{}".to_vec()),
            "a new write is whole"
        );
        assert_eq!(
            disk.wipe(),
            1,
            "the damaged records were discarded when read"
        );
    }
}
