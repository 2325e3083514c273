//! Following the shims: one task per shim reads its event subscription (an async socket read, no
//! thread), so an exit lands in memory the moment the shim sees it. An exit is then persisted,
//! announced, and the shim told to let go of the container (the runtime's delete); an auto-remove
//! container is removed after that; one whose restart policy says so is started again
//! ([`crate::restart`]).
//!
//! When a subscription ends, the shim has exited (normal after its last container was deleted) or
//! died. A dead shim's live containers are cleaned up by the shim binary (`--cleanup`: the runtime
//! deletes what is left) and recorded as exited, with the exit the shim wrote if it got that far.
//!
//! Recovery at berthd's start is the same path: every shim still alive is followed again, and its
//! first events (what it holds) reconcile the records; a shim that is gone is cleaned up.

use crate::events::Action;
use crate::manager::{blocking, Containers};
use crate::record::{ContainerRecord, State};
use crate::Result;
use berth_shim::{Event, Exit};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// What [`Containers::recover`] found at start-up.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub running: usize,
    pub exited_meanwhile: usize,
    pub half_created: usize,
    /// Pods berthd died creating, removed.
    pub half_created_pods: usize,
    /// CNI attachments of containers and pods berthd no longer has, deleted.
    pub stale_attachments: usize,
}

impl Containers {
    /// Follows the events of shim `shim` unless they already are.
    pub(crate) fn monitor(&self, shim: &str) {
        self.monitor_with(shim, None);
    }

    fn monitor_with(&self, shim: &str, synced: Option<tokio::sync::oneshot::Sender<()>>) {
        if !self.monitored.lock().unwrap_or_else(|e| e.into_inner()).insert(shim.to_string()) {
            return;
        }
        let (this, shim) = (self.clone(), shim.to_string());
        let follower = tokio::spawn(async move { this.follow(shim, synced).await });
        let mut followers = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        followers.retain(|f| !f.is_finished());
        followers.push(follower);
    }

    async fn follow(&self, shim: String, mut synced: Option<tokio::sync::oneshot::Sender<()>>) {
        let dir = self.shim_dir(&shim);
        let client = self.shims.client(&dir);
        loop {
            if let Ok(mut events) = client.subscribe().await {
                let mut held = HashSet::new();
                while let Ok(Some(event)) = events.next_event().await {
                    match event {
                        Event::Container(state) => {
                            held.insert(state.id.clone());
                            match state.exit {
                                Some(exit) => self.exited(&state.id, exit),
                                None => self.still_held(&state, &shim),
                            }
                        }
                        Event::Synced => {
                            self.not_held(&shim, &held);
                            if let Some(synced) = synced.take() {
                                let _ = synced.send(());
                            }
                        }
                        Event::Exit { id, exit } => self.exited(&id, exit),
                        Event::Oom { id } => {
                            if let Some(entry) = self.table().get(&id) {
                                self.events.publish(Action::Oom, &entry.borrow());
                            }
                        }
                    }
                }
            }
            // Between a shim's last delete and its exit the socket is already gone. Decided under
            // the lock `monitor` takes: a new shim started in the directory meanwhile (a pod's
            // next container, a container started again) is followed by this task or a new one,
            // never by none.
            {
                let mut monitored = self.monitored.lock().unwrap_or_else(|e| e.into_inner());
                if self.shims.pid(&dir).is_none() {
                    monitored.remove(&shim);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.shim_gone(&shim).await;
        drop(synced);
    }

    /// A shim told of a container's exit (or holds an exited one): the exit lands in memory now;
    /// persisting it, announcing it and releasing the container from the shim follow in a task.
    fn exited(&self, id: &str, exit: Exit) {
        let Some(entry) = self.table().get(id) else {
            // Not ours (removed while berthd was down): the shim still holds it; let it go.
            let this = self.clone();
            let id = id.to_string();
            tokio::spawn(async move { this.release(&id).await });
            return;
        };
        let mut changed = false;
        let record = Containers::modify(&entry, |r| {
            if r.state.is_live() {
                r.state = State::Exited;
                r.exit_code = Some(exit.code);
                r.oom_killed = exit.oom_killed;
                r.finished_at = exit.exited_at;
                r.pid = 0;
                r.releasing = true;
                changed = true;
            }
        });
        drop(entry);
        if changed || record.state == State::Exited {
            let this = self.clone();
            tokio::spawn(async move { this.after_exit(record, changed).await });
        }
    }

    async fn after_exit(&self, record: ContainerRecord, changed: bool) {
        if changed {
            if let Err(e) = self.persist(&record).await {
                tracing_error(&record.id, &e);
            }
            self.events.publish(Action::Die, &record);
        }
        self.release(&record.id).await;
        self.settle(&record.id).await;
    }

    /// The shim lets go of an exited container (the runtime deletes it); the shim ends with its last.
    async fn release(&self, id: &str) {
        let record = self.table().get(id).map(|e| e.borrow().clone());
        let shim = record.as_ref().map(|r| r.shim.clone()).unwrap_or_else(|| id.to_string());
        let dir = self.shim_dir(&shim);
        let lock = self.shim_lock(&shim);
        let deleted = {
            let _held = lock.lock().await;
            self.shims.client(&dir).delete(id).await
        };
        if deleted.is_err() && self.shims.pid(&dir).is_none() {
            // The shim died between the exit and the delete: the runtime's state is still there.
            if let Some(record) = record {
                let this = self.clone();
                let _ = blocking(move || Ok(this.clean_up_after_shim(&record))).await;
            }
        }
    }

    /// The container is out of its shim: its rootfs is unmounted (the writable layer stays, as
    /// with docker and podman; `start` mounts it again), waiters are told; an auto-remove
    /// container goes. The unmount comes first, while `start` still waits for the release.
    async fn settle(&self, id: &str) {
        let Some(record) = self.table().get(id).map(|e| e.borrow().clone()) else { return };
        if !record.auto_remove && record.state == State::Exited {
            let target = self.bundle_dir(id).join("rootfs");
            if let Err(e) = blocking(move || crate::rootfs::unmount(&target)).await {
                tracing_error(id, &e);
            }
        }
        let Some(entry) = self.table().get(id) else { return };
        let record = Containers::modify(&entry, |r| r.releasing = false);
        drop(entry);
        if record.auto_remove && !record.removing {
            let _ = self.remove(id, true).await;
        } else {
            self.restart_if_wanted(id, false);
        }
    }

    /// A live container the shim holds: the record catches up with it (berthd died between the
    /// shim's start and recording it), or, unknown to the records, it goes.
    fn still_held(&self, state: &berth_shim::ShimState, shim: &str) {
        let Some(entry) = self.table().get(&state.id) else {
            let this = self.clone();
            let (id, shim) = (state.id.clone(), shim.to_string());
            tokio::spawn(async move {
                let client = this.shims.client(&this.shim_dir(&shim));
                let _ = client.kill(&id, libc::SIGKILL, true).await;
            });
            return;
        };
        let mut started = false;
        let record = Containers::modify(&entry, |r| {
            if r.state == State::Created && state.status == berth_shim::Status::Running {
                r.state = State::Running;
                r.started_at = crate::now_ns();
                started = true;
            }
        });
        if started {
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.persist(&record).await {
                    tracing_error(&record.id, &e);
                }
            });
        }
    }

    /// Live records of this shim that the shim does not hold: it lost them (it cannot happen short
    /// of someone deleting through the runtime): recorded as exited, unknown status.
    fn not_held(&self, shim: &str, held: &HashSet<String>) {
        let lost: Vec<String> =
            self.table().records().filter(|r| r.shim == shim && r.state.is_live() && !held.contains(&r.id)).map(|r| r.id).collect();
        for id in lost {
            self.exited(&id, unknown_exit());
        }
    }

    /// The shim has exited or died: what it still supervised is cleaned up and recorded as exited.
    async fn shim_gone(&self, shim: &str) {
        let live: Vec<ContainerRecord> = self.table().records().filter(|r| r.shim == shim && r.state.is_live()).collect();
        for record in live {
            let this = self.clone();
            let r = record.clone();
            let exit = blocking(move || Ok(this.clean_up_after_shim(&r))).await.unwrap_or_else(|_| unknown_exit());
            self.exited(&record.id, exit);
        }
    }

    /// The exit the dead shim recorded, if any; the runtime deletes what is left either way.
    fn clean_up_after_shim(&self, record: &ContainerRecord) -> Exit {
        let dir = self.shim_dir(&record.shim);
        let exit = std::fs::read(dir.join(&record.id).join(berth_shim::protocol::EXIT)).ok().and_then(|b| serde_json::from_slice(&b).ok());
        if let Ok(runtime) = self.runtime_binary(&record.runtime) {
            let root = self.paths.runtime_root.join(&record.runtime);
            if let Err(e) = self.shims.cleanup(&dir, &runtime, &root, &record.id) {
                tracing_error(&record.id, &e);
            }
        }
        exit.unwrap_or_else(unknown_exit)
    }

    /// At berthd's start: undo half-created containers; follow every shim again (its first events
    /// reconcile what it holds); clean up after shims that died. Running containers are only
    /// looked at. Returns once every live shim has told what it holds.
    pub async fn recover(&self) -> Result<Recovered> {
        let mut recovered = Recovered::default();
        let records: Vec<ContainerRecord> = self.table().records().collect();
        let live: HashSet<String> = records.iter().filter(|r| r.state.is_live()).map(|r| r.id.clone()).collect();
        let mut shims: HashMap<String, Vec<ContainerRecord>> = HashMap::new();
        // Half-created containers are undone at once, not one after another: each may wait for
        // its shim to go.
        let mut undone = tokio::task::JoinSet::new();
        for record in records {
            if record.state == State::Creating {
                let this = self.clone();
                undone.spawn(async move { this.destroy(&record.id).await });
                recovered.half_created += 1;
            } else {
                shims.entry(record.shim.clone()).or_default().push(record);
            }
        }
        while let Some(done) = undone.join_next().await {
            done.map_err(|e| crate::Error::Shim(format!("undo a half-created container: {e}")))??;
        }
        let mut syncs = Vec::new();
        for (shim, records) in shims {
            if self.shims.pid(&self.shim_dir(&shim)).is_some() {
                let (synced, done) = tokio::sync::oneshot::channel();
                self.monitor_with(&shim, Some(synced));
                syncs.push(done);
            } else if records.iter().any(|r| r.state.is_live()) {
                self.shim_gone(&shim).await;
            }
        }
        for done in syncs {
            let _ = tokio::time::timeout(Duration::from_secs(10), done).await;
        }
        recovered.half_created_pods = self.recover_sandboxes().await?;
        recovered.stale_attachments = self.collect_network_garbage().await;
        // Collected first: a healthcheck started below takes the table's lock itself.
        let survivors: Vec<ContainerRecord> = self.table().records().filter(|r| live.contains(&r.id)).collect();
        for record in survivors {
            match record.state {
                State::Exited => recovered.exited_meanwhile += 1,
                _ => {
                    recovered.running += 1;
                    self.check_health(&record.id);
                }
            }
        }
        // Restart policies, for whatever exited while berthd was down (or before, mid back-off).
        let exited: Vec<String> = self.table().records().filter(|r| r.state == State::Exited).map(|r| r.id).collect();
        for id in exited {
            self.restart_if_wanted(&id, true);
        }
        Ok(recovered)
    }
}

fn unknown_exit() -> Exit {
    Exit { code: 255, signal: None, exited_at: crate::now_ns(), ..Default::default() }
}

fn tracing_error(id: &str, e: &crate::Error) {
    tracing::warn!(container = crate::record::short(id), "{e}");
}
