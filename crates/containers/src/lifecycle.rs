//! Start, kill, stop, wait, and starting an exited container again. Waiting is on the container's
//! record in memory (a `watch` channel the shim's pushed exit updates): no thread, no poll.

use crate::events::Action;
use crate::manager::{blocking, Containers};
use crate::record::{ContainerRecord, State};
use crate::rootfs::unmount;
use crate::{Error, Result};
use std::time::Duration;

impl Containers {
    fn shim_of(&self, record: &ContainerRecord) -> std::sync::Arc<dyn crate::shims::Shim> {
        self.shims.client(&self.shim_dir(&record.shim))
    }

    /// A created container as it is; an exited one created again (same bundle and writable
    /// layer, a new shim), so that its output can be attached to before it starts.
    pub async fn prepare(&self, key: &str) -> Result<ContainerRecord> {
        let record = self.find(key)?;
        match record.state {
            State::Created => Ok(record),
            State::Exited => self.recreate(&record).await,
            State::Running => Err(Error::WrongState(format!("container {} is already running", record.name))),
            State::Creating => Err(Error::WrongState(format!("container {} is still being created", record.name))),
        }
    }

    /// A hand's start: the restart policy holds again ([`crate::restart`]).
    pub async fn start(&self, key: &str) -> Result<ContainerRecord> {
        let id = self.find(key)?.id;
        self.started_by_hand(&id)?;
        let record = self.prepare(&id).await?;
        self.start_prepared(&record, false).await
    }

    /// Starts a prepared container; `restarted` when berthd restarts it by its policy (counted
    /// as it starts, so a stop that follows sees the count).
    pub(crate) async fn start_prepared(&self, record: &ContainerRecord, restarted: bool) -> Result<ContainerRecord> {
        self.shim_of(record).start(&record.id).await?;
        let entry = self.entry(&record.id)?;
        let record = Containers::modify(&entry, |r| {
            // The exit may already be in (a command that ends at once).
            if r.state == State::Created {
                r.state = State::Running;
            }
            r.started_at = crate::now_ns();
            r.restart_count += u32::from(restarted);
        });
        drop(entry);
        self.persist(&record).await?;
        self.events.publish(Action::Start, &record);
        self.check_health(&record.id);
        Ok(record)
    }

    /// An exited container started again: same bundle and writable layer, a new shim. A bundle
    /// that is gone (its state directory is a tmpfs: the host rebooted) is made again first.
    async fn recreate(&self, record: &ContainerRecord) -> Result<ContainerRecord> {
        let mut watch = self.watch(&record.id)?;
        let _ = watch.wait_for(|r| !r.releasing).await;
        if !self.bundle_dir(&record.id).join("config.json").exists() {
            self.restore_bundle(record).await?;
        }
        let record = &self.find(&record.id)?;
        // Its active snapshot remembers the layers (which the container's lease keeps), so the
        // image's name may have moved on meanwhile.
        let (this, id) = (self.clone(), record.id.clone());
        let idmap = self.rootfs_idmap(record)?;
        blocking(move || {
            let target = this.bundle_dir(&id).join("rootfs");
            unmount(&target)?;
            crate::rootfs::mount(&this.images.snapshots.mounts(&id)?, &target, idmap.as_ref())
        })
        .await?;
        let pid = self.launch_and_create(record).await?;
        let entry = self.entry(&record.id)?;
        let record = Containers::modify(&entry, |r| {
            r.state = State::Created;
            r.pid = pid;
            r.exit_code = None;
            r.oom_killed = false;
        });
        drop(entry);
        self.persist(&record).await?;
        Ok(record)
    }

    pub async fn kill(&self, key: &str, signal: i32, all: bool) -> Result<ContainerRecord> {
        let record = self.find(key)?;
        if !record.state.is_live() {
            return Err(Error::WrongState(format!("container {} is not running", record.name)));
        }
        // A signal that ends it (docker's reading of `kill`); SIGHUP and the like leave its
        // policy be.
        if [libc::SIGKILL, libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, record.stop_signal].contains(&signal) {
            self.stopped_by_hand(&record.id).await?;
        }
        self.shim_of(&record).kill(&record.id, signal, all).await?;
        self.find(&record.id)
    }

    /// The stop signal, then after `timeout` SIGKILL to every process; returns once exited.
    pub async fn stop(&self, key: &str, timeout: Duration) -> Result<ContainerRecord> {
        let record = self.find(key)?;
        // Before the signal, so the exit it brings is not restarted (nor a pending restart made).
        self.stopped_by_hand(&record.id).await?;
        if !record.state.is_live() {
            return self.wait(&record.id).await;
        }
        let shim = self.shim_of(&record);
        // A created container's init waits for `start` and would sit on a polite signal.
        // A zero timeout (`rm -f`, `stop -t 0`) goes straight to SIGKILL.
        let signal = if record.state == State::Created { libc::SIGKILL } else { record.stop_signal };
        if !timeout.is_zero() && shim.kill(&record.id, signal, false).await.is_ok() {
            if let Ok(exited) = tokio::time::timeout(timeout, self.wait(&record.id)).await {
                return exited;
            }
        }
        // The shim refuses when the container has just exited: the wait tells.
        let _ = shim.kill(&record.id, libc::SIGKILL, true).await;
        self.wait(&record.id).await
    }

    /// Returns once the container has exited and its shim has let go of it (or it was removed:
    /// then with its last record).
    pub async fn wait(&self, key: &str) -> Result<ContainerRecord> {
        let mut watch = self.watch(key)?;
        let settled = watch.wait_for(|r| r.settled()).await.map(|r| r.clone());
        Ok(settled.unwrap_or_else(|_| watch.borrow().clone()))
    }
}

/// The files of a bundle that outlive a reboot, kept under the data directory: the spec and the
/// /etc files berthd wrote (the state directory holding bundles is a tmpfs).
const KEPT: [&str; 4] = ["config.json", "hosts", "hostname", "resolv.conf"];

impl Containers {
    /// Where a container's bundle files are kept across reboots.
    fn kept_bundle(&self, id: &str) -> std::path::PathBuf {
        self.paths.data.join(id).join("bundle")
    }

    /// Copies the bundle's spec and /etc files to the data directory (at create).
    pub(crate) fn keep_bundle(&self, id: &str) -> Result<()> {
        let (bundle, kept) = (self.bundle_dir(id), self.kept_bundle(id));
        crate::manager::make_dir(&kept)?;
        for name in KEPT {
            let from = bundle.join(name);
            if from.exists() {
                std::fs::copy(&from, kept.join(name)).map_err(|e| Error::io("keep", &from, e))?;
            }
        }
        Ok(())
    }

    /// The kept copy goes with the container.
    pub(crate) fn forget_bundle(&self, id: &str) -> Result<()> {
        match std::fs::remove_dir_all(self.paths.data.join(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", &self.paths.data.join(id), e)),
            _ => Ok(()),
        }
    }

    /// A bundle made again from its kept files after a reboot: the spec and /etc files copied
    /// back; on a bridge network, the stale attachment deleted and a new one made (an address
    /// that may differ, written into its /etc/hosts and its record); on another's network, that
    /// one's namespace pinned again.
    async fn restore_bundle(&self, record: &ContainerRecord) -> Result<()> {
        let (bundle, kept) = (self.bundle_dir(&record.id), self.kept_bundle(&record.id));
        if !kept.join("config.json").exists() {
            return Err(Error::WrongState(format!(
                "container {}: its bundle is gone and none was kept (made by an older berthd): remove it",
                record.name
            )));
        }
        let (from, to) = (kept.clone(), bundle.clone());
        blocking(move || {
            crate::manager::make_dir(&to)?;
            for name in KEPT.iter().filter(|n| from.join(n).exists()) {
                std::fs::copy(from.join(name), to.join(name)).map_err(|e| Error::io("restore", &to.join(name), e))?;
            }
            Ok(())
        })
        .await?;
        tracing::info!(container = crate::record::short(&record.id), "its bundle was gone (a reboot): made again from the kept copy");
        if let Some(network) = &record.network {
            if let Some(service) = self.networks.get() {
                // What ADD made before the reboot: its address and rules go (the netns is gone).
                let _ = crate::pod_network::del_cached(&service.cni, &record.id).await;
            }
            let ips = self.join_network(record).await?;
            let (old, hostname) = (network.ips.clone(), std::fs::read_to_string(bundle.join("hostname")).unwrap_or_default());
            let hosts = bundle.join("hosts");
            let new = ips.clone();
            blocking(move || {
                let hostname = hostname.trim().to_string();
                let text = std::fs::read_to_string(&hosts).map_err(|e| Error::io("read", &hosts, e))?;
                let own = |ip: &String| format!("{ip}\t{hostname}");
                let mut lines: Vec<String> = text.lines().filter(|l| !old.iter().any(|ip| *l == own(ip))).map(str::to_string).collect();
                let at = lines.iter().position(|l| l.starts_with("# berth:")).unwrap_or(lines.len());
                for ip in new.iter().rev() {
                    lines.insert(at, own(ip));
                }
                std::fs::write(&hosts, lines.join("\n") + "\n").map_err(|e| Error::io("write", &hosts, e))
            })
            .await?;
            let entry = self.entry(&record.id)?;
            let updated = Containers::modify(&entry, |r| {
                if let Some(n) = &mut r.network {
                    n.ips = ips;
                }
            });
            drop(entry);
            self.persist(&updated).await?;
            self.refresh_hosts(&network.name, None).await;
        }
        if let Some(theirs) = &record.network_of {
            self.share_network(record, theirs).await?;
        }
        Ok(())
    }
}
