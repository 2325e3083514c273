//! Container and pod (sandbox) records and where they persist: tables of berthd's one metadata
//! database (redb, `<root>/meta.redb`, beside the images and leases), by id.
//! A record is written before anything else of a container exists (state `Creating`), so a crash
//! half way is found and undone at start-up.
//!
//! The database is written by one thread ([`Persister`]) that commits whatever is queued in one
//! transaction: 500 containers exiting at once cost a few commits, not 500 fsyncs in a row.

use crate::sandbox::SandboxRecord;
use crate::{Error, Result};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The version of the file containers had to themselves before they moved into `meta.redb`.
const SCHEMA_VERSION: u64 = 1;
const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");
const SANDBOXES: TableDefinition<&str, &[u8]> = TableDefinition::new("sandboxes");

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
    /// The image's id (its config's digest).
    #[serde(default)]
    pub image_id: String,
    /// The name its API gave it where that need not be unique (the CRI's metadata name: with
    /// the pod and the attempt it is); empty otherwise.
    #[serde(default)]
    pub metadata_name: String,
    /// The user's labels (berth.v1) or the CRI's; annotations are the CRI's.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The pod (sandbox) it belongs to, and which attempt of the pod's container it is (CRI).
    #[serde(default)]
    pub sandbox: Option<String>,
    #[serde(default)]
    pub attempt: u32,
    /// Its stdio: a terminal, and stdin kept open.
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub stdin: bool,
    /// An attach whose input ends closes the container's stdin (the CRI's `stdin_once`).
    #[serde(default)]
    pub stdin_once: bool,
    /// Removed once it has exited (`--rm`), by the library, whether or not anyone still waits.
    #[serde(default)]
    pub auto_remove: bool,
    /// Its bridge network (`berth run`): the network, its addresses, its published ports.
    #[serde(default)]
    pub network: Option<crate::container_network::ContainerNetwork>,
    /// The container (id) whose network namespace it joined at create (`container:NAME`).
    #[serde(default)]
    pub network_of: Option<String>,
    /// Its restart policy (`--restart`), how many times berthd restarted it since a hand last
    /// started it, and whether a hand stopped it since ([`crate::restart`]).
    #[serde(default)]
    pub restart: crate::restart::RestartPolicy,
    #[serde(default)]
    pub restart_count: u32,
    #[serde(default)]
    pub stopped_by_user: bool,
    /// Restarts after short runs in a row (the back-off's step), and whether one is scheduled.
    /// In memory only.
    #[serde(skip)]
    pub restart_backoff: u32,
    #[serde(skip)]
    pub restart_pending: bool,
    /// A restart is under way (made again, being started): `rm` waits for it to end.
    #[serde(skip)]
    pub restarting: bool,
    /// Its CRI-format log, when the API chose where (the kubelet does); else in its bundle.
    #[serde(default)]
    pub log_path: Option<std::path::PathBuf>,
    /// Its healthcheck (the image's or the run's), and the last verdict.
    #[serde(default)]
    pub healthcheck: Option<crate::health::HealthCheck>,
    #[serde(default)]
    pub health: Option<crate::health::Health>,
    /// Named and anonymous volumes it mounts.
    #[serde(default)]
    pub volumes: Vec<crate::volumes::VolumeUse>,
    /// The process the container runs, for `ps` and `inspect`, as [`shown_command`] bounds it
    /// (the whole of it is in the bundle's spec).
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
    /// A created container of its own shim, for tests of the library's logic.
    #[cfg(test)]
    pub(crate) fn for_test(id: &str, name: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            name: name.into(),
            image: String::new(),
            image_manifest: String::new(),
            image_id: String::new(),
            metadata_name: String::new(),
            labels: Default::default(),
            annotations: Default::default(),
            sandbox: None,
            attempt: 0,
            tty: false,
            stdin: false,
            stdin_once: false,
            auto_remove: false,
            network: None,
            network_of: None,
            restart: Default::default(),
            restart_count: 0,
            stopped_by_user: false,
            restart_backoff: 0,
            restart_pending: false,
            restarting: false,
            log_path: None,
            healthcheck: None,
            health: None,
            volumes: Vec::new(),
            command: Vec::new(),
            stop_signal: libc::SIGTERM,
            runtime: "fake".into(),
            shim: id.into(),
            state: State::Created,
            pid: 0,
            exit_code: None,
            oom_killed: false,
            created_at: 0,
            started_at: 0,
            finished_at: 0,
            releasing: false,
            removing: false,
        }
    }

    /// Exited and let go of by its shim: what `wait` waits for.
    pub fn settled(&self) -> bool {
        self.state == State::Exited && !self.releasing
    }
}

pub struct ContainerDb {
    db: Arc<redb::Database>,
}

fn db_error(e: impl std::fmt::Display) -> Error {
    Error::Db(e.to_string())
}

/// One change to the tables.
pub enum Change {
    Put(Box<ContainerRecord>),
    Remove(String),
    PutSandbox(Box<SandboxRecord>),
    RemoveSandbox(String),
}

impl ContainerDb {
    /// The containers' and pods' tables in berthd's metadata database (the image store's file).
    /// Containers recorded by an older berth in their own `legacy` file are moved in, once.
    pub fn open(db: Arc<redb::Database>, legacy: &Path) -> Result<ContainerDb> {
        let txn = db.begin_write().map_err(db_error)?;
        txn.open_table(CONTAINERS).map_err(db_error)?;
        txn.open_table(SANDBOXES).map_err(db_error)?;
        txn.commit().map_err(db_error)?;
        let db = ContainerDb { db };
        if legacy.exists() {
            let old = ContainerDb { db: Arc::new(berth_image::meta::open_versioned(legacy, SCHEMA_VERSION, &[CONTAINERS])?) };
            let moved: Vec<Change> = old.list()?.into_iter().map(|r| Change::Put(Box::new(r))).collect();
            db.apply(&moved)?;
            drop(old);
            std::fs::remove_file(legacy).map_err(|e| Error::io("remove", legacy, e))?;
        }
        Ok(db)
    }

    /// Every change in one transaction.
    pub fn apply(&self, changes: &[Change]) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut containers = txn.open_table(CONTAINERS).map_err(db_error)?;
            let mut sandboxes = txn.open_table(SANDBOXES).map_err(db_error)?;
            for change in changes {
                match change {
                    Change::Put(record) => {
                        let json = serde_json::to_vec(record).map_err(db_error)?;
                        containers.insert(record.id.as_str(), json.as_slice()).map_err(db_error)?;
                    }
                    Change::Remove(id) => {
                        containers.remove(id.as_str()).map_err(db_error)?;
                    }
                    Change::PutSandbox(record) => {
                        let json = serde_json::to_vec(record).map_err(db_error)?;
                        sandboxes.insert(record.id.as_str(), json.as_slice()).map_err(db_error)?;
                    }
                    Change::RemoveSandbox(id) => {
                        sandboxes.remove(id.as_str()).map_err(db_error)?;
                    }
                }
            }
        }
        txn.commit().map_err(db_error)
    }

    pub fn list(&self) -> Result<Vec<ContainerRecord>> {
        self.read_all(CONTAINERS)
    }

    pub fn list_sandboxes(&self) -> Result<Vec<SandboxRecord>> {
        self.read_all(SANDBOXES)
    }

    fn read_all<T: serde::de::DeserializeOwned>(&self, definition: TableDefinition<&str, &[u8]>) -> Result<Vec<T>> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(definition).map_err(db_error)?;
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

/// What a record keeps of its command: lists of many containers must stay far below the
/// transport's message limit whatever one image's entrypoint holds, and a record is cloned and
/// persisted often, so past [`MAX_SHOWN_COMMAND`] bytes the command is cut, the cut marked by "…".
pub fn shown_command(command: &[String]) -> Vec<String> {
    let mut shown = Vec::new();
    let mut bytes = 0;
    for arg in command {
        if bytes + arg.len() > MAX_SHOWN_COMMAND {
            let room = MAX_SHOWN_COMMAND.saturating_sub(bytes);
            let cut = (0..=room.min(arg.len())).rev().find(|i| arg.is_char_boundary(*i)).unwrap_or(0);
            shown.push(format!("{}…", &arg[..cut]));
            return shown;
        }
        bytes += arg.len();
        shown.push(arg.clone());
    }
    shown
}

pub const MAX_SHOWN_COMMAND: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_commands_are_cut_on_a_character_boundary_and_marked() {
        let short = vec!["sh".to_string(), "-c".into(), "true".into()];
        assert_eq!(shown_command(&short), short);
        let long = vec!["é".repeat(MAX_SHOWN_COMMAND); 3];
        let shown = shown_command(&long);
        assert_eq!(shown.len(), 1);
        assert!(shown[0].ends_with('…') && shown[0].len() <= MAX_SHOWN_COMMAND + '…'.len_utf8());
        let many = vec!["x".repeat(100); 1000];
        let shown = shown_command(&many);
        assert_eq!(shown.len(), MAX_SHOWN_COMMAND / 100 + 1);
    }
}
