//! In-memory shims for tests of the library's logic without root or processes: they keep the
//! containers' states, push exits to subscribers, and end with their last container, as the real
//! ones do (both pass `shims::conformance`). A test can also make a container exit on its own,
//! make a shim die, and have containers ignore a signal.

use crate::shims::{Events, Shim, ShimResult, Shims};
use berth_shim::{CreateRequest, Event, Exit, ShimState, Status};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

#[derive(Default)]
struct FakeShim {
    pid: i32,
    containers: BTreeMap<String, ShimState>,
    subscribers: Vec<mpsc::UnboundedSender<Event>>,
}

#[derive(Default)]
struct State {
    shims: HashMap<PathBuf, FakeShim>,
    next_pid: i32,
    ignored: HashSet<i32>,
    cleaned: Vec<String>,
}

#[derive(Clone, Default)]
pub struct FakeShims(Arc<Mutex<State>>);

fn gone(dir: &Path) -> berth_shim::Error {
    berth_shim::Error::Gone { path: dir.join("shim.sock"), source: std::io::Error::from(std::io::ErrorKind::NotFound) }
}

fn refused(message: String) -> berth_shim::Error {
    berth_shim::Error::Refused(message)
}

impl FakeShims {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Containers take `signal` without exiting (a program that traps SIGTERM).
    pub fn ignore_signal(&self, signal: i32) {
        self.state().ignored.insert(signal);
    }

    /// The container's process exits by itself with `code`.
    pub fn exit(&self, dir: &Path, id: &str, code: i32) {
        let mut state = self.state();
        if let Some(shim) = state.shims.get_mut(dir) {
            exit(shim, id, Exit { code, exited_at: 1, ..Default::default() });
        }
    }

    /// The OOM killer kills one of the container's processes (not its init).
    pub fn oom(&self, dir: &Path, id: &str) {
        if let Some(shim) = self.state().shims.get_mut(dir) {
            shim.subscribers.retain(|s| s.send(Event::Oom { id: id.to_string() }).is_ok());
        }
    }

    /// Whether someone follows the shim's events.
    pub fn subscribed(&self, dir: &Path) -> bool {
        self.state().shims.get(dir).is_some_and(|s| !s.subscribers.is_empty())
    }

    /// The shim dies (kill -9): its subscriptions end, its containers are left to clean up.
    pub fn crash(&self, dir: &Path) {
        self.state().shims.remove(dir);
    }

    /// The containers `cleanup` was asked for.
    pub fn cleaned(&self) -> Vec<String> {
        self.state().cleaned.clone()
    }

    /// The status the shim in `dir` holds container `id` in.
    pub fn status(&self, dir: &Path, id: &str) -> Option<Status> {
        self.state().shims.get(dir).and_then(|s| s.containers.get(id)).map(|c| c.status)
    }
}

fn exit(shim: &mut FakeShim, id: &str, exit: Exit) {
    let Some(container) = shim.containers.get_mut(id) else { return };
    container.status = Status::Stopped;
    container.exit = Some(exit.clone());
    let event = Event::Exit { id: id.to_string(), exit };
    shim.subscribers.retain(|s| s.send(event.clone()).is_ok());
}

impl Shims for FakeShims {
    fn client(&self, dir: &Path) -> Arc<dyn Shim> {
        Arc::new(FakeClient { shims: self.clone(), dir: dir.to_path_buf() })
    }

    fn launch(&self, dir: &Path, _runtime: &Path, _root: &Path) -> crate::Result<i32> {
        let mut state = self.state();
        state.next_pid += 1;
        let pid = 1000 + state.next_pid;
        state.shims.insert(dir.to_path_buf(), FakeShim { pid, ..Default::default() });
        Ok(pid)
    }

    fn pid(&self, dir: &Path) -> Option<i32> {
        self.state().shims.get(dir).map(|s| s.pid)
    }

    fn cleanup(&self, _dir: &Path, _runtime: &Path, _root: &Path, id: &str) -> crate::Result<()> {
        self.state().cleaned.push(id.to_string());
        Ok(())
    }

    fn terminate(&self, dir: &Path) {
        self.crash(dir);
    }
}

struct FakeClient {
    shims: FakeShims,
    dir: PathBuf,
}

impl FakeClient {
    fn with<T>(&self, f: impl FnOnce(&mut FakeShim, &mut State) -> ShimResult<T>) -> ShimResult<T> {
        let mut state = self.shims.state();
        let mut shim = state.shims.remove(&self.dir).ok_or_else(|| gone(&self.dir))?;
        let result = f(&mut shim, &mut state);
        state.shims.insert(self.dir.clone(), shim);
        result
    }
}

impl Shim for FakeClient {
    fn create<'a>(&'a self, id: &'a str, _request: &'a CreateRequest) -> BoxFuture<'a, ShimResult<i32>> {
        Box::pin(async move {
            self.with(|shim, state| {
                if shim.containers.contains_key(id) {
                    return Err(refused(format!("container {id} already exists in this shim")));
                }
                state.next_pid += 1;
                let pid = 1000 + state.next_pid;
                shim.containers.insert(id.to_string(), ShimState { id: id.to_string(), pid, status: Status::Created, exit: None });
                Ok(pid)
            })
        })
    }

    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ShimResult<()>> {
        Box::pin(async move {
            self.with(|shim, _| match shim.containers.get_mut(id) {
                Some(c) if c.status == Status::Created => {
                    c.status = Status::Running;
                    Ok(())
                }
                Some(_) => Err(refused(format!("container {id} is already started"))),
                None => Err(refused(format!("no container {id} in this shim"))),
            })
        })
    }

    fn kill<'a>(&'a self, id: &'a str, signal: i32, _all: bool) -> BoxFuture<'a, ShimResult<()>> {
        Box::pin(async move {
            self.with(|shim, state| {
                let container = shim.containers.get(id).ok_or_else(|| refused(format!("no container {id} in this shim")))?;
                if container.status == Status::Stopped {
                    return Err(refused(format!("container {id} has exited")));
                }
                if !state.ignored.contains(&signal) || signal == libc::SIGKILL {
                    exit(shim, id, Exit { code: 128 + signal, signal: Some(signal), exited_at: 1, ..Default::default() });
                }
                Ok(())
            })
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ShimResult<()>> {
        Box::pin(async move {
            let mut state = self.shims.state();
            let shim = state.shims.get_mut(&self.dir).ok_or_else(|| gone(&self.dir))?;
            match shim.containers.get(id).map(|c| c.status) {
                Some(Status::Running) => return Err(refused(format!("container {id} is running: kill it first"))),
                Some(_) => {
                    shim.containers.remove(id);
                }
                None => return Err(refused(format!("no container {id} in this shim"))),
            }
            // The last container gone, the shim goes (its subscriptions end with it).
            if shim.containers.is_empty() {
                state.shims.remove(&self.dir);
            }
            Ok(())
        })
    }

    fn subscribe(&self) -> BoxFuture<'_, ShimResult<Box<dyn Events>>> {
        Box::pin(async move {
            self.with(|shim, _| {
                let (sender, receiver) = mpsc::unbounded_channel();
                for container in shim.containers.values() {
                    let _ = sender.send(Event::Container(container.clone()));
                }
                let _ = sender.send(Event::Synced);
                shim.subscribers.push(sender);
                Ok(Box::new(FakeEvents(receiver)) as Box<dyn Events>)
            })
        })
    }
}

struct FakeEvents(mpsc::UnboundedReceiver<Event>);

impl Events for FakeEvents {
    fn next_event(&mut self) -> BoxFuture<'_, ShimResult<Option<Event>>> {
        Box::pin(async move { Ok(self.0.recv().await) })
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_fake_passes_the_shim_conformance_suite() {
        let shims = super::FakeShims::default();
        let dir = std::env::temp_dir().join(format!("berth-fake-shim-{}", std::process::id()));
        let nowhere = std::path::Path::new("/nonexistent");
        crate::shims::conformance(&shims, &dir, nowhere, nowhere, nowhere, nowhere).await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
