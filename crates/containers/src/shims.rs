//! The seam in front of the shims: [`Shims`] starts, reaches and cleans up after a shim in a
//! directory, [`Shim`] is the client of one. The library only ever goes through these, so its
//! state machine runs against [`fake::FakeShims`] in unit tests (no root, no processes), and the
//! real thing ([`ProcessShims`]: the `berth-shim` binary and its async client) passes the same
//! [`conformance`] suite in the integration tests.

use berth_shim::{AsyncClient, CreateRequest, Event};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub type ShimResult<T> = std::result::Result<T, berth_shim::Error>;
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The client of one shim: requests name the container.
pub trait Shim: Send + Sync {
    fn create<'a>(&'a self, id: &'a str, request: &'a CreateRequest) -> BoxFuture<'a, ShimResult<i32>>;
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ShimResult<()>>;
    fn kill<'a>(&'a self, id: &'a str, signal: i32, all: bool) -> BoxFuture<'a, ShimResult<()>>;
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ShimResult<()>>;
    /// What the shim holds, then its events as they happen; ends when the shim goes.
    fn subscribe(&self) -> BoxFuture<'_, ShimResult<Box<dyn Events>>>;
}

pub trait Events: Send {
    /// The next event; None once the shim is gone.
    fn next_event(&mut self) -> BoxFuture<'_, ShimResult<Option<Event>>>;
}

/// Shims by directory. `launch` and `cleanup` block (they run a program); call them off async
/// threads.
pub trait Shims: Send + Sync {
    fn client(&self, dir: &Path) -> Arc<dyn Shim>;
    /// Starts a shim in `dir` (made by the caller, 0700) whose runtime is `runtime` with `root`;
    /// returns its pid once it listens.
    fn launch(&self, dir: &Path, runtime: &Path, root: &Path) -> crate::Result<i32>;
    /// The pid of the live shim in `dir`, if there is one.
    fn pid(&self, dir: &Path) -> Option<i32>;
    /// For a shim that died: the runtime deletes what is left of container `id`.
    fn cleanup(&self, dir: &Path, runtime: &Path, root: &Path, id: &str) -> crate::Result<()>;
    /// Kills the live shim of `dir` (one that never got as far as listening).
    fn terminate(&self, dir: &Path);
}

/// The real shims: the `berth-shim` binary at `binary`, reached with its async client.
pub struct ProcessShims {
    pub binary: PathBuf,
}

impl Shims for ProcessShims {
    fn client(&self, dir: &Path) -> Arc<dyn Shim> {
        Arc::new(AsyncClient::new(dir))
    }

    fn launch(&self, dir: &Path, runtime: &Path, root: &Path) -> crate::Result<i32> {
        crate::shim_launcher::launch(&self.binary, dir, runtime, root)
    }

    fn pid(&self, dir: &Path) -> Option<i32> {
        crate::shim_launcher::shim_pid(dir)
    }

    fn cleanup(&self, dir: &Path, runtime: &Path, root: &Path, id: &str) -> crate::Result<()> {
        crate::shim_launcher::cleanup(&self.binary, dir, runtime, root, id)
    }

    fn terminate(&self, dir: &Path) {
        if let Some(pid) = self.pid(dir) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Shim for AsyncClient {
    fn create<'a>(&'a self, id: &'a str, request: &'a CreateRequest) -> BoxFuture<'a, ShimResult<i32>> {
        Box::pin(AsyncClient::create(self, id, request))
    }
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ShimResult<()>> {
        Box::pin(AsyncClient::start(self, id))
    }
    fn kill<'a>(&'a self, id: &'a str, signal: i32, all: bool) -> BoxFuture<'a, ShimResult<()>> {
        Box::pin(AsyncClient::kill(self, id, signal, all))
    }
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ShimResult<()>> {
        Box::pin(AsyncClient::delete(self, id))
    }
    fn subscribe(&self) -> BoxFuture<'_, ShimResult<Box<dyn Events>>> {
        Box::pin(async move { AsyncClient::subscribe(self).await.map(|events| Box::new(events) as Box<dyn Events>) })
    }
}

impl Events for berth_shim::AsyncEvents {
    fn next_event(&mut self) -> BoxFuture<'_, ShimResult<Option<Event>>> {
        Box::pin(berth_shim::AsyncEvents::next_event(self))
    }
}

/// What every [`Shims`] must do, as the library relies on it. `bundle` is a bundle whose process
/// runs until killed (the fake ignores it). Panics on the first difference.
pub async fn conformance(shims: &dyn Shims, dir: &Path, bundle: &Path, log: &Path, runtime: &Path, root: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    shims.launch(dir, runtime, root).expect("launch");
    assert!(shims.pid(dir).is_some(), "a launched shim is alive");
    let shim = shims.client(dir);
    let mut events = shim.subscribe().await.expect("subscribe");
    assert_eq!(events.next_event().await.unwrap(), Some(Event::Synced), "an empty shim tells nothing first");
    let request = CreateRequest { bundle: bundle.to_path_buf(), log: log.to_path_buf(), log_max_size: 1 << 20, tty: false, stdin: false };
    let pid = shim.create("conformance-a", &request).await.expect("create");
    assert!(pid > 0);
    assert!(shim.create("conformance-a", &request).await.is_err(), "one container per id");
    shim.create("conformance-b", &request).await.expect("a second container");
    shim.start("conformance-a").await.expect("start");
    assert!(shim.delete("conformance-a").await.is_err(), "a running container is not deleted");
    shim.kill("conformance-a", libc::SIGKILL, true).await.expect("kill");
    match events.next_event().await.unwrap() {
        Some(Event::Exit { id, exit }) => assert_eq!((id.as_str(), exit.code, exit.signal), ("conformance-a", 137, Some(libc::SIGKILL))),
        other => panic!("expected the exit of conformance-a, got {other:?}"),
    }
    assert!(shim.kill("conformance-a", libc::SIGKILL, false).await.is_err(), "an exited container takes no signal");
    shim.delete("conformance-a").await.expect("delete the exited container");
    assert!(shims.pid(dir).is_some(), "the shim stays for its other container");
    // A container never started is deleted as it is (its process killed).
    shim.delete("conformance-b").await.expect("delete the created container");
    assert!(events.next_event().await.unwrap().is_none(), "the subscription ends with the shim");
    for _ in 0..250 {
        if shims.pid(dir).is_none() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the shim outlived its last container");
}
