//! [`Containers`]: the container operations berthd serves, async, cheap to clone. State lives in
//! memory ([`crate::table`]), fed by the shims' pushed exits ([`crate::monitor`]) and persisted
//! by one writer ([`crate::record::Persister`]); the operations themselves are in one file each:
//! [`crate::create`], [`crate::lifecycle`] (start, kill, stop, wait), [`crate::remove`],
//! [`crate::exec`]. Each leaves the record, the disk and the shim consistent with each other
//! whatever fails half way: a failed create is undone, a crash mid-create is undone at recovery.
//!
//! Blocking work (mounts, files, the image store, starting a shim) runs on tokio's blocking pool
//! for the length of that work only; nothing waits on a container from a thread.

use crate::events::Bus;
use crate::record::{Change, ContainerDb, ContainerRecord, Persister};
use crate::shim_launcher::Binaries;
use crate::table::Table;
use crate::{Error, Result};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Where containers live: their records are in the image store's database and their writable
/// layers are its active snapshots; `data` is where older releases kept the records (migrated
/// once from `containers.redb`), `state` keeps bundles, logs and shim directories (a tmpfs like /run),
/// `runtime_root` is the OCI runtime's `--root`.
#[derive(Debug, Clone)]
pub struct Paths {
    pub data: PathBuf,
    pub state: PathBuf,
    pub runtime_root: PathBuf,
    /// Named and anonymous volumes ([`crate::volumes`]).
    pub volumes: PathBuf,
}

#[derive(Clone)]
pub struct Containers {
    inner: Arc<Inner>,
}

pub struct Inner {
    pub(crate) images: Arc<berth_image::Store>,
    pub(crate) persister: Persister,
    pub(crate) table: Mutex<Table>,
    pub(crate) events: Bus,
    pub(crate) paths: Paths,
    pub(crate) binaries: Binaries,
    /// The runtimes by name and the default one: the config's, replaced by a reload.
    pub(crate) runtimes: std::sync::RwLock<(std::collections::BTreeMap<String, PathBuf>, String)>,
    pub(crate) shims: Arc<dyn crate::shims::Shims>,
    pub(crate) log_max_size: u64,
    pub(crate) sandboxes: Mutex<std::collections::BTreeMap<String, crate::sandbox::SandboxRecord>>,
    /// Shims (by id) whose events are being followed.
    pub(crate) monitored: Mutex<std::collections::HashSet<String>>,
    /// The tasks following them (ended by [`Containers::shutdown`]).
    pub(crate) followers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Per shim: held while it is started or asked to create or delete a container, so a pod's
    /// containers never start two shims, nor meet one that is going away.
    pub(crate) shim_locks: Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Pods' networks (CNI in berthd); without one, pods have loopback only.
    pub(crate) network: std::sync::OnceLock<Arc<dyn crate::pod_network::PodNetwork>>,
    /// `berth run`'s bridge networks (berthd's); without them, containers have none.
    pub(crate) networks: std::sync::OnceLock<Arc<crate::container_network::NetworkService>>,
    pub(crate) volumes: crate::volumes::Volumes,
}

impl std::ops::Deref for Containers {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

pub(crate) fn make_dir(path: &Path) -> Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(|e| Error::io("create", path, e))
}

/// Runs blocking work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Error::Shim(format!("a blocking task failed: {e}")))?
}

impl Containers {
    /// Opens the database and loads every record into memory; containers are supervised by
    /// `berth-shim` processes. Call [`Containers::recover`] next.
    pub fn open(images: Arc<berth_image::Store>, paths: Paths, binaries: Binaries, log_max_size: u64) -> Result<Containers> {
        let shims = Arc::new(crate::shims::ProcessShims { binary: binaries.shim.clone() });
        Containers::open_with(images, paths, binaries, log_max_size, shims)
    }

    /// As [`Containers::open`], with the shims given (the fake ones in tests).
    pub fn open_with(
        images: Arc<berth_image::Store>,
        paths: Paths,
        binaries: Binaries,
        log_max_size: u64,
        shims: Arc<dyn crate::shims::Shims>,
    ) -> Result<Containers> {
        for dir in [&paths.data, &paths.state, &paths.runtime_root] {
            make_dir(dir)?;
        }
        let db = ContainerDb::open(images.images.database(), &paths.data.join("containers.redb"))?;
        let mut table = Table::default();
        for record in db.list()? {
            table.insert(record)?;
        }
        let sandboxes = db.list_sandboxes()?.into_iter().map(|s| (s.id.clone(), s)).collect();
        let volumes = crate::volumes::Volumes::new(paths.volumes.clone());
        let inner = Inner {
            images,
            persister: Persister::start(db),
            table: Mutex::new(table),
            events: Bus::default(),
            paths,
            runtimes: std::sync::RwLock::new((binaries.runtimes.clone(), binaries.default_runtime.clone())),
            binaries,
            shims,
            log_max_size,
            sandboxes: Mutex::new(sandboxes),
            monitored: Default::default(),
            followers: Default::default(),
            shim_locks: Default::default(),
            network: Default::default(),
            networks: Default::default(),
            volumes,
        };
        Ok(Containers { inner: Arc::new(inner) })
    }

    /// Gives pods their network from now on (once, at start-up, before any pod is made).
    pub fn set_pod_network(&self, network: Arc<dyn crate::pod_network::PodNetwork>) {
        if self.network.set(network).is_err() {
            tracing::warn!("the pod network was set already; keeping the first");
        }
    }

    pub fn pod_network(&self) -> Option<Arc<dyn crate::pod_network::PodNetwork>> {
        self.network.get().cloned()
    }

    pub(crate) fn bundle_dir(&self, id: &str) -> PathBuf {
        self.paths.state.join(id)
    }

    /// A shim's directory: its socket, pid file and its containers' exit records.
    pub fn shim_dir(&self, shim: &str) -> PathBuf {
        self.paths.state.join(shim).join("shim")
    }

    /// The container's CRI-format log (written by its shim, rotated to `ctr.log.1`).
    pub fn log_path(&self, record: &ContainerRecord) -> PathBuf {
        record.log_path.clone().unwrap_or_else(|| self.bundle_dir(&record.id).join("ctr.log"))
    }

    pub(crate) fn runtime_binary(&self, name: &str) -> Result<PathBuf> {
        let runtimes = self.runtimes.read().unwrap_or_else(|e| e.into_inner());
        runtimes.0.get(name).cloned().ok_or_else(|| {
            let known = runtimes.0.keys().cloned().collect::<Vec<_>>().join(", ");
            Error::Invalid(format!("unknown runtime {name:?} (known: {known})"))
        })
    }

    /// The runtimes' names (the CRI's runtime handlers), and the default one.
    pub fn runtime_names(&self) -> (Vec<String>, String) {
        let runtimes = self.runtimes.read().unwrap_or_else(|e| e.into_inner());
        (runtimes.0.keys().cloned().collect(), runtimes.1.clone())
    }

    /// New runtimes and default (a config reload): containers made from now on use them; those
    /// running keep the binary their shim was started with.
    pub fn set_runtimes(&self, runtimes: std::collections::BTreeMap<String, PathBuf>, default: String) {
        *self.runtimes.write().unwrap_or_else(|e| e.into_inner()) = (runtimes, default);
    }

    pub(crate) fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding the lock leaves a table that is still whole (every change is one
        // call): carry on with it.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock of shim `shim` (see `Inner::shim_locks`).
    pub(crate) fn shim_lock(&self, shim: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.shim_locks.lock().unwrap_or_else(|e| e.into_inner()).entry(shim.to_string()).or_default().clone()
    }

    pub(crate) fn entry(&self, key: &str) -> Result<watch::Sender<ContainerRecord>> {
        self.table().find(key)
    }

    /// Changes the record in memory (waking its watchers) and returns it; see [`Containers::persist`].
    pub(crate) fn modify(entry: &watch::Sender<ContainerRecord>, change: impl FnOnce(&mut ContainerRecord)) -> ContainerRecord {
        entry.send_modify(change);
        entry.borrow().clone()
    }

    pub(crate) async fn persist(&self, record: &ContainerRecord) -> Result<()> {
        self.persister.write(Change::Put(Box::new(record.clone()))).await
    }

    pub fn find(&self, key: &str) -> Result<ContainerRecord> {
        Ok(self.entry(key)?.borrow().clone())
    }

    /// A watcher of the container's record: it sees every change, and the channel closing when the
    /// container is removed. (Never hold the entry itself while waiting: its sender keeps the
    /// channel open.)
    pub(crate) fn watch(&self, key: &str) -> Result<watch::Receiver<ContainerRecord>> {
        Ok(self.entry(key)?.subscribe())
    }

    /// Every container, newest first.
    pub fn list(&self) -> Vec<ContainerRecord> {
        let mut records: Vec<ContainerRecord> = self.table().records().collect();
        records.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        records
    }

    /// Stops following the shims (the containers run on, as they do without berthd); returns
    /// once no task of this library holds it.
    pub async fn shutdown(self) {
        let followers = std::mem::take(&mut *self.followers.lock().unwrap_or_else(|e| e.into_inner()));
        for follower in &followers {
            follower.abort();
        }
        for follower in followers {
            let _ = follower.await;
        }
    }

    /// The events of every container from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::events::Event> {
        self.events.subscribe()
    }

    /// Removes image `name` (normalized) from the store unless a container was made from it:
    /// the rule every API that removes images keeps.
    pub async fn remove_image(&self, name: &str) -> Result<()> {
        if let Some(user) = self.table().records().find(|r| r.image == name) {
            return Err(Error::WrongState(format!("image {name} is used by container {}: remove the container first", user.name)));
        }
        let (images, owned) = (self.images.clone(), name.to_string());
        if !blocking(move || Ok(images.images.remove(&owned)?)).await? {
            return Err(Error::NoImage(name.to_string()));
        }
        Ok(())
    }

    /// The container's runtime spec (its bundle's config.json).
    pub async fn spec(&self, id: &str) -> Result<serde_json::Value> {
        let path = self.bundle_dir(id).join("config.json");
        blocking(move || {
            let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
            serde_json::from_slice(&bytes).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
        })
        .await
    }
}
