//! Container records in an embedded database (redb, `<root>/containers/containers.redb`), by id,
//! with a schema version like the image metadata's. A record is written before anything else of a
//! container exists (state `Creating`), so a crash half way is found and undone at start-up.

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
    pub state: State,
    pub pid: i32,
    pub exit_code: Option<i32>,
    /// Nanoseconds since the epoch; 0 for never.
    pub created_at: u64,
    pub started_at: u64,
    pub finished_at: u64,
}

pub struct ContainerDb {
    db: redb::Database,
}

fn db_error(e: impl std::fmt::Display) -> Error {
    Error::Db(e.to_string())
}

impl ContainerDb {
    pub fn open(path: &Path) -> Result<ContainerDb> {
        Ok(ContainerDb { db: berth_image::meta::open_versioned(path, SCHEMA_VERSION, &[CONTAINERS])? })
    }

    /// Inserts `record` unless its name is taken, atomically (two creates with one name: one wins).
    pub fn insert_new(&self, record: &ContainerRecord) -> Result<()> {
        let json = serde_json::to_vec(record).map_err(db_error)?;
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut table = txn.open_table(CONTAINERS).map_err(db_error)?;
            for entry in table.iter().map_err(db_error)? {
                let (_, value) = entry.map_err(db_error)?;
                let other: ContainerRecord = serde_json::from_slice(value.value()).map_err(db_error)?;
                if other.name == record.name {
                    return Err(Error::Conflict(format!("the name {} is already used by container {}", record.name, short(&other.id))));
                }
            }
            table.insert(record.id.as_str(), json.as_slice()).map_err(db_error)?;
        }
        txn.commit().map_err(db_error)
    }

    /// Reads, changes and writes one record in one transaction (concurrent changes serialize).
    pub fn update(&self, id: &str, change: impl FnOnce(&mut ContainerRecord) -> Result<()>) -> Result<ContainerRecord> {
        let txn = self.db.begin_write().map_err(db_error)?;
        let record = {
            let mut table = txn.open_table(CONTAINERS).map_err(db_error)?;
            let mut record: ContainerRecord = match table.get(id).map_err(db_error)? {
                Some(value) => serde_json::from_slice(value.value()).map_err(db_error)?,
                None => return Err(Error::NotFound(id.to_string())),
            };
            change(&mut record)?;
            let json = serde_json::to_vec(&record).map_err(db_error)?;
            table.insert(id, json.as_slice()).map_err(db_error)?;
            record
        };
        txn.commit().map_err(db_error)?;
        Ok(record)
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

    pub fn remove(&self, id: &str) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_error)?;
        txn.open_table(CONTAINERS).map_err(db_error)?.remove(id).map_err(db_error)?;
        txn.commit().map_err(db_error)
    }

    /// By full id, unique id prefix, or name.
    pub fn find(&self, key: &str) -> Result<ContainerRecord> {
        let records = self.list()?;
        if let Some(record) = records.iter().find(|r| r.id == key || r.name == key) {
            return Ok(record.clone());
        }
        let matches: Vec<&ContainerRecord> = records.iter().filter(|r| !key.is_empty() && r.id.starts_with(key)).collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::NotFound(key.to_string())),
            _ => Err(Error::Invalid(format!("{key} names more than one container; give more of the id"))),
        }
    }
}

/// The 12-character id people read.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
