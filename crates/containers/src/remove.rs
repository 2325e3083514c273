//! What happens at remove: a live container is killed first (SIGKILL to all its processes) and
//! waited for until its shim has let go of it; then its network is detached (IP and published
//! ports released), its rootfs is unmounted, its bundle, writable
//! layer and lease go, and its record last, so a crash half way leaves a record to retry. Nothing
//! is deleted while a shim may still write into it: that ordering is what makes `rm -f` of many
//! containers reliable.

use crate::create::lease_id;
use crate::events::Action;
use crate::manager::{blocking, Containers};
use crate::record::{Change, ContainerRecord, State};
use crate::rootfs::unmount;
use crate::{Error, Result};
use std::path::Path;
use std::time::Duration;

impl Containers {
    pub async fn remove(&self, key: &str, force: bool) -> Result<ContainerRecord> {
        let entry = self.entry(key)?;
        let mut already = false;
        let record = Containers::modify(&entry, |r| {
            already = r.removing;
            if !already && (force || !r.state.is_live() || r.state == State::Created) {
                r.removing = true;
            }
        });
        drop(entry);
        if already {
            // Someone else removes it (an auto-remove, another rm): done when they are.
            return self.wait_removed(&record.id).await;
        }
        if record.removing && record.restarting {
            // A restart by its policy is making it again: it yields once it sees `removing`.
            let mut watch = self.watch(&record.id)?;
            let _ = watch.wait_for(|r| !r.restarting).await;
        }
        let record = if record.removing { self.find(&record.id)? } else { record };
        if !record.removing {
            return Err(Error::WrongState(format!("container {} is {}: stop it first, or remove it with force", record.name, record.state.as_str())));
        }
        if record.state.is_live() || record.releasing {
            if let Err(e) = self.stop(&record.id, Duration::ZERO).await {
                self.entry(&record.id).map(|entry| entry.send_modify(|r| r.removing = false)).ok();
                return Err(e);
            }
        }
        let mut watch = self.watch(&record.id)?;
        let _ = watch.wait_for(|r| !r.releasing).await;
        let record = watch.borrow().clone();
        self.destroy(&record.id).await?;
        Ok(record)
    }

    /// Returns once the container is removed (by whoever removes it).
    pub async fn wait_removed(&self, key: &str) -> Result<ContainerRecord> {
        let mut watch = self.watch(key)?;
        while watch.changed().await.is_ok() {}
        let record = watch.borrow().clone();
        Ok(record)
    }

    /// Removes everything of a container that no shim holds: rootfs mount, bundle, writable layer,
    /// lease, record — in that order. For a container still being created (a failed create, or
    /// one found half-created at start-up) its shim is told to let go first, or cleaned up after.
    pub(crate) async fn destroy(&self, id: &str) -> Result<()> {
        let Some(record) = self.table().get(id).map(|e| e.borrow().clone()) else { return Ok(()) };
        if record.state == State::Creating {
            self.release_half_created(&record).await;
        }
        // Its network goes while the namespace is pinned in the bundle (plugins find eth0).
        self.leave_network(&record).await?;
        let this = self.clone();
        let r = record.clone();
        blocking(move || {
            let bundle = this.bundle_dir(&r.id);
            // Another container's namespace it joined (container:NAME) is pinned there too.
            crate::pod_namespaces::unpin(&bundle)?;
            unmount(&bundle.join("rootfs"))?;
            remove_tree(&bundle)?;
            this.images.snapshots.remove_active(&r.id)?;
            this.forget_bundle(&r.id)?;
            this.images.images.release(&lease_id(&r.id))?;
            // Its anonymous volumes are its own (named ones outlive it), unless another container
            // was given one by name.
            for volume in r.volumes.iter().filter(|v| v.anonymous && this.volume_users(&v.name).iter().all(|user| *user == r.name)) {
                match this.volumes.remove(&volume.name) {
                    Err(Error::NoVolume(_)) | Ok(()) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
        .await?;
        self.persister.write(Change::Remove(record.id.clone())).await?;
        if let Some(removed) = self.table().remove(id) {
            self.events.publish(Action::Destroy, &removed);
        }
        Ok(())
    }

    /// A half-created container's shim, if it got one: told to delete the container (and then
    /// waited for, as it ends with its last container), or, if it died, cleaned up after.
    async fn release_half_created(&self, record: &ContainerRecord) {
        let dir = self.shim_dir(&record.shim);
        if self.shims.pid(&dir).is_some() {
            let _ = self.shims.client(&dir).delete(&record.id).await;
            for _ in 0..100 {
                if self.shims.pid(&dir).is_none() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // A shim of its own that never got as far as listening (berthd died while starting it)
        // would wait out its idle time: it holds nothing the runtime cannot clean up, so it goes.
        if record.shim == record.id {
            self.shims.terminate(&dir);
        }
        // The runtime made its state directory only if the create got that far.
        if self.paths.runtime_root.join(&record.runtime).join(&record.id).exists() {
            if let Ok(runtime) = self.runtime_binary(&record.runtime) {
                let (shims, root, id) = (self.shims.clone(), self.paths.runtime_root.join(&record.runtime), record.id.clone());
                let _ = blocking(move || shims.cleanup(&dir, &runtime, &root, &id)).await;
            }
        }
    }
}

/// Removes a directory tree, whatever is already gone.
fn remove_tree(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", dir, e)),
    }
}
