//! Container records and where they persist: an embedded database (redb,
//! `<root>/containers/containers.redb`), by id, with a schema version like the image metadata's.
//! A record is written before anything else of a container exists (state `Creating`), so a crash
//! half way is found and undone at start-up.
//!
//! The database is written by one thread ([`Persister`]) that commits whatever is queued in one
//! transaction: 500 containers exiting at once cost a few commits, not 500 fsyncs in a row.

use crate::options::CreateOptions;
use crate::{Error, Result};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const SCHEMA_VERSION: u64 = 1;
const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Being created: undone at start-up if berthd died meanwhile.
    Creating,
    Created,
    Running,
    Exited,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Creating => "creating",
            State::Created => "created",
            State::Running => "running",
            State::Exited => "exited",
        }
    }

    /// Created or running: a shim holds its process.
    pub fn is_live(self) -> bool {
        matches!(self, State::Created | State::Running)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    /// The normalized image name, and the manifest it resolved to at create.
    pub image: String,
    pub image_manifest: String,
    pub options: CreateOptions,
    /// The process the container runs (for `ps` and `inspect`).
    pub command: Vec<String>,
    /// The signal `stop` sends first (the image's StopSignal, else SIGTERM).
    pub stop_signal: i32,
    pub runtime: String,
    /// The shim that supervises it (its directory's name): the container's own id, or a pod's.
    #[serde(default)]
    pub shim: String,
    pub state: State,
    pub pid: i32,
    pub exit_code: Option<i32>,
    /// The kernel's OOM killer was at work in its memory cgroup when it exited.
    #[serde(default)]
    pub oom_killed: bool,
    /// Nanoseconds since the epoch; 0 for never.
    pub created_at: u64,
    pub started_at: u64,
    pub finished_at: u64,
    /// Exited, and its shim has not yet let go of it (the runtime's delete is under way): it
    /// cannot be started again or removed until this clears. In memory only.
    #[serde(skip)]
    pub releasing: bool,
    /// Being removed. In memory only.
    #[serde(skip)]
    pub removing: bool,
}

impl ContainerRecord {
    /// Exited and let go of by its shim: what `wait` waits for.
    pub fn settled(&self) -> bool {
        self.state == State::Exited && !self.releasing
    }
}

pub struct ContainerDb {
    db: redb::Database,
}

fn db_error(e: impl std::fmt::Display) -> Error {
    Error::Db(e.to_string())
}

/// One change to the table.
pub enum Change {
    Put(Box<ContainerRecord>),
    Remove(String),
}

impl ContainerDb {
    pub fn open(path: &Path) -> Result<ContainerDb> {
        Ok(ContainerDb { db: berth_image::meta::open_versioned(path, SCHEMA_VERSION, &[CONTAINERS])? })
    }

    /// Every change in one transaction.
    pub fn apply(&self, changes: &[Change]) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut table = txn.open_table(CONTAINERS).map_err(db_error)?;
            for change in changes {
                match change {
                    Change::Put(record) => {
                        let json = serde_json::to_vec(record).map_err(db_error)?;
                        table.insert(record.id.as_str(), json.as_slice()).map_err(db_error)?;
                    }
                    Change::Remove(id) => {
                        table.remove(id.as_str()).map_err(db_error)?;
                    }
                }
            }
        }
        txn.commit().map_err(db_error)
    }

    pub fn list(&self) -> Result<Vec<ContainerRecord>> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(CONTAINERS).map_err(db_error)?;
        let mut records = Vec::new();
        for entry in table.iter().map_err(db_error)? {
            let (_, value) = entry.map_err(db_error)?;
            records.push(serde_json::from_slice(value.value()).map_err(db_error)?);
        }
        Ok(records)
    }
}

type Done = tokio::sync::oneshot::Sender<std::result::Result<(), String>>;

/// The database's one writer: changes are queued and committed in batches by a thread of its own
/// (redb commits block; berthd's async threads must not).
pub struct Persister {
    queue: std::sync::mpsc::Sender<(Change, Done)>,
}

impl Persister {
    pub fn start(db: ContainerDb) -> Persister {
        let (queue, changes) = std::sync::mpsc::channel::<(Change, Done)>();
        std::thread::Builder::new()
            .name("containers-db".into())
            .spawn(move || {
                // Ends when every sender is gone (the Containers with it).
                while let Ok(first) = changes.recv() {
                    let mut batch = vec![first];
                    batch.extend(changes.try_iter());
                    let (changes, done): (Vec<Change>, Vec<Done>) = batch.into_iter().unzip();
                    let result = db.apply(&changes).map_err(|e| e.to_string());
                    for done in done {
                        let _ = done.send(result.clone());
                    }
                }
            })
            .expect("spawn the database writer");
        Persister { queue }
    }

    /// Returns once the change is committed.
    pub async fn write(&self, change: Change) -> Result<()> {
        let (done, committed) = tokio::sync::oneshot::channel();
        self.queue.send((change, done)).map_err(|_| Error::Db("the database writer has stopped".into()))?;
        committed.await.map_err(|_| Error::Db("the database writer has stopped".into()))?.map_err(Error::Db)
    }
}

/// The 12-character id people read.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
