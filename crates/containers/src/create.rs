//! What happens at create: the record first (state `Creating`, persisted), then the image's
//! layers leased, the rootfs mounted (the image's snapshots under a writable layer), the user
//! resolved from the image's own passwd/group, the spec and /etc files written into the bundle,
//! a shim started and asked to create the container. A failure anywhere undoes all of it.

use crate::events::Action;
use crate::image_config::RunConfig;
use crate::manager::{blocking, make_dir, Containers};
use crate::options::{CreateOptions, Network};
use crate::record::{short, ContainerRecord, State};
use crate::run_spec::{self, SpecInputs};
use crate::{passwd, Error, Result};
use berth_image::meta::ImageRecord;
use std::path::{Path, PathBuf};

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
fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 128 && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric()) && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// What create works from, once the request is checked.
pub(crate) struct Plan {
    pub options: CreateOptions,
    pub image: ImageRecord,
    pub run_config: RunConfig,
    pub hostname: String,
}

impl Containers {
    pub async fn create(&self, options: CreateOptions) -> Result<ContainerRecord> {
        let this = self.clone();
        let (record, plan) = blocking(move || this.plan(options)).await?;
        let entry = self.table().insert(record.clone())?;
        drop(entry);
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
    fn plan(&self, options: CreateOptions) -> Result<(ContainerRecord, Plan)> {
        let name = berth_image::Reference::parse(&options.image).map(|r| r.to_string()).map_err(|e| Error::Invalid(e.to_string()))?;
        let image = self.images.images.get(&name)?.ok_or_else(|| Error::NoImage(options.image.clone()))?;
        let runtime = options.runtime.clone().unwrap_or_else(|| self.binaries.default_runtime.clone());
        // A pod's containers share its shim; any other container has one of its own.
        let sandbox = options.sandbox.as_deref().map(|key| self.find_sandbox(key)).transpose()?.map(|s| s.id);
        self.runtime_binary(&runtime)?;
        let id = random_id()?;
        let container_name = options.name.clone().unwrap_or_else(|| short(&id).to_string());
        if !valid_name(&container_name) {
            return Err(Error::Invalid(format!("container name {container_name:?}: use letters, digits, _ . - (starting with a letter or digit)")));
        }
        let hostname = options.hostname.clone().unwrap_or_else(|| short(&id).to_string());
        let run_config = RunConfig::load(&self.images, &image.config)?;
        let command = run_spec::command(&options, &run_config)?;
        let stop_signal = match run_config.stop_signal.as_deref() {
            Some(signal) => berth_spec::signals::parse(signal).map_err(|e| Error::Invalid(format!("the image's StopSignal: {e}")))?,
            None => libc::SIGTERM,
        };
        let record = ContainerRecord {
            id: id.clone(),
            name: container_name,
            image: name,
            image_manifest: image.manifest.to_string(),
            labels: options.labels.clone(),
            annotations: Default::default(),
            shim: sandbox.clone().unwrap_or_else(|| id.clone()),
            sandbox,
            attempt: 0,
            tty: options.tty,
            stdin: options.stdin,
            auto_remove: options.auto_remove,
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
        Ok((record, Plan { options, image, run_config, hostname }))
    }

    /// Rootfs, bundle, shim; the init's pid.
    async fn materialize(&self, record: &ContainerRecord, plan: Plan) -> Result<i32> {
        let this = self.clone();
        let r = record.clone();
        blocking(move || this.write_bundle(&r, &plan)).await?;
        self.launch_and_create(record).await
    }

    fn write_bundle(&self, record: &ContainerRecord, plan: &Plan) -> Result<()> {
        let image = &plan.image;
        let kept: Vec<berth_image::Digest> = image.chain_ids.iter().chain([&image.config, &image.manifest]).cloned().collect();
        self.images.images.lease(&lease_id(&record.id), &kept)?;
        let bundle = self.bundle_dir(&record.id);
        make_dir(&bundle)?;
        let rootfs = bundle.join("rootfs");
        crate::rootfs::mount(&self.images.snapshots.prepare(&record.id, &image.chain_ids)?, &rootfs)?;
        let user_spec = plan.options.user.clone().or_else(|| plan.run_config.user.clone()).unwrap_or_default();
        let user = passwd::resolve(&rootfs, &user_spec)?;
        let etc_files = write_etc_files(&bundle, &plan.hostname, plan.options.network)?;
        let inputs = SpecInputs {
            id: &record.id,
            options: &plan.options,
            image: &plan.run_config,
            user: &user,
            hostname: &plan.hostname,
            etc_files: &etc_files,
        };
        crate::spec_opts::write(&run_spec::build(&inputs)?, &bundle)
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
            log: self.log_path(&record.id),
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

/// /etc/hosts, /etc/hostname and /etc/resolv.conf for the container, bound read-only: with the
/// host's network, the host's files; with none, loopback only.
fn write_etc_files(bundle: &Path, hostname: &str, network: Network) -> Result<Vec<(String, PathBuf)>> {
    let (hosts, resolv) = match network {
        Network::Host => (std::fs::read_to_string("/etc/hosts").unwrap_or_default(), std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
        Network::None => (String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"), String::new()),
    };
    let hosts = format!("{hosts}127.0.1.1\t{hostname}\n");
    let mut files = Vec::new();
    for (name, text) in [("hosts", hosts), ("hostname", format!("{hostname}\n")), ("resolv.conf", resolv)] {
        let path = bundle.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io("write", &path, e))?;
        files.push((format!("/etc/{name}"), path));
    }
    Ok(files)
}
