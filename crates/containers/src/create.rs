//! What happens at create, for every API alike (a [`Blueprint`]): the record first (state
//! `Creating`, persisted), then the image's layers leased, the rootfs mounted (the image's
//! snapshots under a writable layer, an active snapshot), the spec made by the blueprint's
//! [`SpecMaker`](crate::blueprint::SpecMaker) and written into the bundle, a shim started and
//! asked to create the container. A failure anywhere undoes all of it.

use crate::blueprint::{Blueprint, SpecContext, SpecMaker};
use crate::events::Action;
use crate::image_config::RunConfig;
use crate::manager::{blocking, make_dir, Containers};
use crate::options::CreateOptions;
use crate::record::{short, ContainerRecord, State};
use crate::{Error, Result};
use berth_image::meta::ImageRecord;
use std::path::Path;

pub(crate) fn lease_id(id: &str) -> String {
    format!("container-{id}")
}

pub(crate) fn random_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    let urandom = Path::new("/dev/urandom");
    let mut file = std::fs::File::open(urandom).map_err(|e| Error::io("open", urandom, e))?;
    std::io::Read::read_exact(&mut file, &mut bytes).map_err(|e| Error::io("read", urandom, e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Names: docker's rule, so scripts that work there work here.
/// Label and annotation keys are names: shown in lists, matched by filters, put into the OCI
/// spec's annotations. Visible characters only (no space, newline or escape), no `=`, at most
/// 1 KiB; values are free.
pub(crate) fn check_keys<'a>(keys: impl IntoIterator<Item = &'a String>) -> Result<()> {
    for key in keys {
        if key.is_empty() || key.len() > 1024 || key.contains('=') || key.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(Error::Invalid(format!(
                "label or annotation key {:?}: visible characters but '=', at most 1 KiB",
                key.escape_debug().take(80).collect::<String>()
            )));
        }
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 128 && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric()) && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// What create works from, once the request is checked.
pub(crate) struct Plan {
    spec: Box<dyn SpecMaker>,
    image: ImageRecord,
    run_config: RunConfig,
}

impl Containers {
    /// A container as `berth run`'s flags describe it.
    pub async fn create(&self, options: CreateOptions) -> Result<ContainerRecord> {
        self.create_from(crate::run_spec::blueprint(options)).await
    }

    pub async fn create_from(&self, blueprint: Blueprint) -> Result<ContainerRecord> {
        let this = self.clone();
        let (record, plan) = blocking(move || this.plan(blueprint)).await?;
        {
            // Published ports are checked against the others' under the lock that inserts.
            let mut table = self.table();
            Containers::check_ports(table.records(), &record)?;
            table.insert(record.clone())?;
        }
        if let Err(e) = self.persist(&record).await {
            self.table().remove(&record.id);
            return Err(e);
        }
        match self.materialize(&record, plan).await {
            Ok(pid) => {
                let entry = self.entry(&record.id)?;
                let record = Containers::modify(&entry, |r| {
                    r.state = State::Created;
                    r.pid = pid;
                });
                self.persist(&record).await?;
                if let Some(network) = &record.network {
                    self.refresh_hosts(&network.name, None).await;
                }
                self.events.publish(Action::Create, &record);
                Ok(record)
            }
            Err(e) => {
                let _ = self.destroy(&record.id).await;
                Err(e)
            }
        }
    }

    /// Checks the request against the image; the record to be.
    fn plan(&self, blueprint: Blueprint) -> Result<(ContainerRecord, Plan)> {
        let image = self.images.images.find(&blueprint.image)?.ok_or_else(|| Error::NoImage(blueprint.image.clone()))?;
        let name = image.name.clone();
        let runtime = blueprint.runtime.clone().unwrap_or_else(|| self.runtime_names().1);
        // A pod's containers share its shim; any other container has one of its own.
        let sandbox = blueprint.sandbox.as_deref().map(|key| self.find_sandbox(key)).transpose()?.map(|s| s.id);
        self.runtime_binary(&runtime)?;
        if let Some(log) = &blueprint.log_path {
            if !log.is_absolute() {
                return Err(Error::Invalid(format!("log path {} is not absolute", log.display())));
            }
        }
        check_keys(blueprint.labels.keys().chain(blueprint.annotations.keys()))?;
        crate::restart::check_with_auto_remove(blueprint.restart, blueprint.auto_remove)?;
        let id = random_id()?;
        let container_name = blueprint.name.clone().unwrap_or_else(|| short(&id).to_string());
        if !valid_name(&container_name) {
            return Err(Error::Invalid(format!("container name {container_name:?}: use letters, digits, _ . - (starting with a letter or digit)")));
        }
        let run_config = RunConfig::load(&self.images, &image.config)?;
        let published = blueprint.spec.published(&run_config)?;
        if !published.is_empty() && blueprint.network.is_none() {
            return Err(Error::Invalid("publishing the image's ports needs a bridge network".into()));
        }
        let network = blueprint
            .network
            .as_ref()
            .map(|n| {
                self.plan_network(&crate::container_network::ContainerNetwork {
                    ports: n.ports.iter().cloned().chain(published).collect(),
                    ..n.clone()
                })
            })
            .transpose()?;
        let network_of = match &blueprint.network_of {
            Some(key) => {
                let theirs = self.find(key)?;
                if theirs.state != State::Running {
                    let why = format!("container {} is {}: only a running container's network can be joined", theirs.name, theirs.state.as_str());
                    return Err(Error::WrongState(why));
                }
                Some(theirs.id)
            }
            None => None,
        };
        let command = crate::record::shown_command(&blueprint.spec.command(&run_config)?);
        let healthcheck = blueprint.spec.healthcheck(&run_config)?;
        // Anonymous volumes are named now, so the record says which are its own.
        let volumes = blueprint
            .spec
            .volumes(&run_config)?
            .into_iter()
            .map(|v| if v.anonymous { random_id().map(|name| crate::volumes::VolumeUse { name, ..v }) } else { Ok(v) })
            .collect::<Result<Vec<_>>>()?;
        let stop_signal = match run_config.stop_signal.as_deref() {
            Some(signal) => berth_spec::signals::parse(signal).map_err(|e| Error::Invalid(format!("the image's StopSignal: {e}")))?,
            None => libc::SIGTERM,
        };
        let record = ContainerRecord {
            id: id.clone(),
            name: container_name,
            image: name,
            image_manifest: image.manifest.to_string(),
            image_id: image.config.to_string(),
            metadata_name: blueprint.metadata_name,
            labels: blueprint.labels,
            annotations: blueprint.annotations,
            shim: sandbox.clone().unwrap_or_else(|| id.clone()),
            sandbox,
            attempt: blueprint.attempt,
            tty: blueprint.tty,
            stdin: blueprint.stdin,
            stdin_once: blueprint.stdin_once,
            auto_remove: blueprint.auto_remove,
            network,
            network_of,
            restart: blueprint.restart,
            restart_count: 0,
            stopped_by_user: false,
            restart_backoff: 0,
            restart_pending: false,
            restarting: false,
            log_path: blueprint.log_path,
            healthcheck,
            health: None,
            volumes,
            command,
            stop_signal,
            runtime,
            state: State::Creating,
            pid: 0,
            exit_code: None,
            oom_killed: false,
            created_at: crate::now_ns(),
            started_at: 0,
            finished_at: 0,
            releasing: false,
            removing: false,
        };
        Ok((record, Plan { spec: blueprint.spec, image, run_config }))
    }

    /// Network, rootfs, bundle, shim; the init's pid.
    async fn materialize(&self, record: &ContainerRecord, plan: Plan) -> Result<i32> {
        let mut record = record.clone();
        if record.network.is_some() {
            let ips = self.join_network(&record).await?;
            if let Some(network) = &mut record.network {
                network.ips = ips.clone();
            }
            let entry = self.entry(&record.id)?;
            let updated = Containers::modify(&entry, |r| {
                if let Some(n) = &mut r.network {
                    n.ips = ips;
                }
            });
            self.persist(&updated).await?;
        }
        if let Some(theirs) = &record.network_of {
            self.share_network(&record, theirs).await?;
        }
        let this = self.clone();
        let r = record.clone();
        blocking(move || this.write_bundle(&r, plan)).await?;
        self.launch_and_create(&record).await
    }

    fn write_bundle(&self, record: &ContainerRecord, plan: Plan) -> Result<()> {
        let image = &plan.image;
        let kept: Vec<berth_image::Digest> = image.chain_ids.iter().chain([&image.config, &image.manifest]).cloned().collect();
        self.images.images.lease(&lease_id(&record.id), &kept)?;
        let bundle = self.bundle_dir(&record.id);
        make_dir(&bundle)?;
        let rootfs = bundle.join("rootfs");
        crate::rootfs::mount(&self.images.snapshots.prepare(&record.id, &image.chain_ids)?, &rootfs, self.rootfs_idmap(record)?.as_ref())?;
        let volumes = self.prepare_volumes(record, &rootfs)?;
        let theirs = record.network_of.as_deref().map(|id| self.bundle_dir(id));
        let context = SpecContext {
            id: &record.id,
            bundle: &bundle,
            rootfs: &rootfs,
            image: &plan.run_config,
            network: record.network.as_ref(),
            network_of: theirs.as_deref(),
            volumes: &volumes,
        };
        crate::spec_opts::write(&plan.spec.spec(&context)?, &bundle)?;
        // A pod's containers are the kubelet's to make again after a reboot; berth.v1's are
        // berthd's (restart policies, `start`).
        match record.sandbox {
            None => self.keep_bundle(&record.id),
            Some(_) => Ok(()),
        }
    }

    /// How the container's root filesystem is idmapped: through its pod's user namespace, if
    /// the pod has one.
    pub(crate) fn rootfs_idmap(&self, record: &ContainerRecord) -> Result<Option<crate::rootfs::Idmap>> {
        let Some(key) = &record.sandbox else { return Ok(None) };
        let sandbox = self.find_sandbox(key)?;
        let root = sandbox.config.user_namespace.as_ref().map(crate::UserNamespace::root);
        Ok(root
            .zip(self.sandbox_namespace(&sandbox, crate::pod_namespaces::PodNamespace::User))
            .map(|(root, userns)| crate::rootfs::Idmap { userns, root }))
    }

    /// Its volumes made where missing and, when empty, filled from the image: (use, directory).
    fn prepare_volumes(&self, record: &ContainerRecord, rootfs: &Path) -> Result<Vec<(crate::volumes::VolumeUse, std::path::PathBuf)>> {
        let mut ready = Vec::new();
        for volume in &record.volumes {
            let info = if volume.anonymous { self.volumes.create_anonymous_named(&volume.name)? } else { self.volumes.create(&volume.name)? };
            self.volumes.copy_up(&volume.name, rootfs, &volume.target)?;
            ready.push((volume.clone(), info.mountpoint));
        }
        Ok(ready)
    }

    /// Has the container's shim create it (its pod's shim, or one of its own), starting the shim
    /// first if it is not running; its events are followed from then on.
    pub(crate) async fn launch_and_create(&self, record: &ContainerRecord) -> Result<i32> {
        let shim_dir = self.shim_dir(&record.shim);
        let lock = self.shim_lock(&record.shim);
        let _held = lock.lock().await;
        if self.shims.pid(&shim_dir).is_none() {
            let runtime = self.runtime_binary(&record.runtime)?;
            let runtime_root = self.paths.runtime_root.join(&record.runtime);
            let (shims, dir) = (self.shims.clone(), shim_dir.clone());
            blocking(move || {
                make_dir(&dir)?;
                shims.launch(&dir, &runtime, &runtime_root)
            })
            .await?;
        }
        let request = berth_shim::CreateRequest {
            bundle: self.bundle_dir(&record.id),
            log: self.log_path(record),
            log_max_size: self.log_max_size,
            tty: record.tty,
            stdin: record.stdin,
        };
        let pid = self
            .shims
            .client(&shim_dir)
            .create(&record.id, &request)
            .await
            .map_err(|e| Error::Shim(format!("create container {}: {e}", short(&record.id))))?;
        self.monitor(&record.shim);
        Ok(pid)
    }
}
