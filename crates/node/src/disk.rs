//! A node's stable storage: named records that survive the node's crashes and restarts. The
//! simulator keeps each node's disk outside the node, as it keeps the lease store's keyspace,
//! so a restart finds what the last incarnation wrote; `wipe` models a lost disk.

use crate::sync::lock;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// The record a master's replicated commands and config live in (a
/// [`Snapshot`](fleet_core::cluster::Snapshot) record).
pub const LEDGER: &str = "ledger";

/// Cheap to clone; every clone is the same disk.
#[derive(Clone, Default)]
pub struct Disk(Arc<Mutex<BTreeMap<String, Vec<u8>>>>);

impl Disk {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        lock(&self.0)
    }

    pub fn read(&self, record: &str) -> Option<Vec<u8>> {
        self.lock().get(record).cloned()
    }

    /// Replaces `record`; it is durable when this returns.
    pub fn write(&self, record: &str, bytes: Vec<u8>) {
        self.lock().insert(record.to_string(), bytes);
    }

    /// Erases everything, as a replaced disk would.
    pub fn wipe(&self) {
        self.lock().clear();
    }
}

impl fmt::Debug for Disk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let records: Vec<String> = self.lock().keys().cloned().collect();
        f.debug_struct("Disk").field("records", &records).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_outlive_a_clone_and_a_wipe_erases_them() {
        let disk = Disk::default();
        let same = disk.clone();
        disk.write("raft/hard_state", b"{}".to_vec());
        assert_eq!(same.read("raft/hard_state"), Some(b"{}".to_vec()));
        same.wipe();
        assert_eq!(disk.read("raft/hard_state"), None);
    }
}
