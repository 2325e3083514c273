//! The containers as berthd knows them, in memory: by id (ordered, so a unique id prefix is a range
//! lookup) and by name (a map). Every read (`ps`, `inspect`, a kubelet's list every second) is
//! answered here without asking any shim; shims push exits (crate::monitor), which land here first
//! and in the database next.
//!
//! Each container is a `watch` channel of its record: a change wakes whoever waits on it (`wait`,
//! `stop`), and the channel closing tells them the container was removed.

use crate::record::ContainerRecord;
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use tokio::sync::watch;

#[derive(Default)]
pub struct Table {
    by_id: BTreeMap<String, watch::Sender<ContainerRecord>>,
    by_name: HashMap<String, String>,
}

impl Table {
    /// Adds `record` unless its id or name is taken.
    pub fn insert(&mut self, record: ContainerRecord) -> Result<watch::Sender<ContainerRecord>> {
        if let Some(other) = self.by_name.get(&record.name) {
            return Err(Error::Conflict(format!("the name {} is already used by container {}", record.name, crate::record::short(other))));
        }
        if self.by_id.contains_key(&record.id) {
            return Err(Error::Conflict(format!("container id {} is taken", record.id)));
        }
        let (id, name) = (record.id.clone(), record.name.clone());
        let (sender, _) = watch::channel(record);
        self.by_id.insert(id.clone(), sender.clone());
        self.by_name.insert(name, id);
        Ok(sender)
    }

    /// Drops the container; whoever watches it sees the channel close.
    pub fn remove(&mut self, id: &str) -> Option<ContainerRecord> {
        let sender = self.by_id.remove(id)?;
        let record = sender.borrow().clone();
        if self.by_name.get(&record.name).is_some_and(|i| i == id) {
            self.by_name.remove(&record.name);
        }
        Some(record)
    }

    pub fn get(&self, id: &str) -> Option<watch::Sender<ContainerRecord>> {
        self.by_id.get(id).cloned()
    }

    /// By full id, name, or unique id prefix.
    pub fn find(&self, key: &str) -> Result<watch::Sender<ContainerRecord>> {
        if let Some(found) = self.by_id.get(key).or_else(|| self.by_name.get(key).and_then(|id| self.by_id.get(id))) {
            return Ok(found.clone());
        }
        let mut prefixed =
            self.by_id.range::<str, _>((std::ops::Bound::Included(key), std::ops::Bound::Unbounded)).take_while(|(id, _)| id.starts_with(key));
        match (prefixed.next(), prefixed.next()) {
            (Some((_, one)), None) if !key.is_empty() => Ok(one.clone()),
            (Some(_), Some(_)) if !key.is_empty() => Err(Error::Invalid(format!("{key} names more than one container; give more of the id"))),
            _ => Err(Error::NotFound(key.to_string())),
        }
    }

    pub fn records(&self) -> impl Iterator<Item = ContainerRecord> + '_ {
        self.by_id.values().map(|s| s.borrow().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str) -> ContainerRecord {
        ContainerRecord::for_test(id, name)
    }

    #[test]
    fn found_by_id_name_and_unique_prefix() {
        let mut table = Table::default();
        table.insert(record("abc123", "web")).unwrap();
        table.insert(record("abd456", "db")).unwrap();
        for key in ["abc123", "web", "abc", "abd4"] {
            assert!(table.find(key).is_ok(), "{key}");
        }
        assert_eq!(table.find("db").unwrap().borrow().id, "abd456");
        assert!(matches!(table.find("ab"), Err(Error::Invalid(_))), "ambiguous prefix");
        assert!(matches!(table.find("x"), Err(Error::NotFound(_))));
        assert!(matches!(table.find(""), Err(Error::NotFound(_))));
    }

    #[test]
    fn names_are_unique_and_freed_on_removal() {
        let mut table = Table::default();
        let sender = table.insert(record("a1", "web")).unwrap();
        let watcher = sender.subscribe();
        drop(sender);
        assert!(matches!(table.insert(record("b2", "web")), Err(Error::Conflict(_))));
        assert!(matches!(table.insert(record("a1", "other")), Err(Error::Conflict(_))));
        assert_eq!(table.remove("a1").unwrap().name, "web");
        assert!(watcher.has_changed().is_err(), "watchers see the removal");
        table.insert(record("b2", "web")).unwrap();
        assert_eq!((table.records().count(), table.find("web").unwrap().borrow().id.clone()), (1, "b2".to_string()));
    }
}
