//! [`Containers`]: the container operations berthd serves. Each is synchronous (berthd runs them
//! off its async threads) and leaves the record, the disk and the shim consistent with each other
//! whatever fails half way: a failed create is undone, a crash mid-create is undone by [`recover`].
//!
//! A record says what berthd last saw; the shim (or, once it has gone, its `exit.json`) says what
//! is true. Every read goes through [`Containers::observe`], which brings the record up to date.
//!
//! [`recover`]: Containers::recover

use crate::image_config::RunConfig;
use crate::options::CreateOptions;
use crate::record::{short, ContainerDb, ContainerRecord, State};
use crate::rootfs::{unmount, RootfsLayout};
use crate::shim_launcher::{launch, Binaries, Launch};
use crate::spec_builder::{self, SpecInputs};
use crate::{passwd, Error, Result};
use berth_shim::{Client, Exit};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where containers live: `data` keeps writable layers and the database (survives reboots),
/// `state` keeps bundles and shim directories (a tmpfs like /run), `runtime_root` is the OCI
/// runtime's `--root`.
#[derive(Debug, Clone)]
pub struct Paths {
    pub data: PathBuf,
    pub state: PathBuf,
    pub runtime_root: PathBuf,
}

pub struct Containers {
    images: Arc<berth_image::Store>,
    db: ContainerDb,
    paths: Paths,
    binaries: Binaries,
    log_max_size: u64,
}

/// What [`Containers::recover`] found at start-up.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub running: usize,
    pub exited_meanwhile: usize,
    pub half_created: usize,
}

fn lease_id(id: &str) -> String {
    format!("container-{id}")
}

fn make_dir(path: &Path) -> Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(|e| Error::io("create", path, e))
}

fn random_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").map_err(|e| Error::io("open", Path::new("/dev/urandom"), e))?, &mut bytes)
        .map_err(|e| Error::io("read", Path::new("/dev/urandom"), e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Names: docker's rule, so scripts that work there work here.
fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 128 && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric()) && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn valid_hostname(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl Containers {
    pub fn open(images: Arc<berth_image::Store>, paths: Paths, binaries: Binaries, log_max_size: u64) -> Result<Containers> {
        for dir in [&paths.data, &paths.state, &paths.runtime_root] {
            make_dir(dir)?;
        }
        let db = ContainerDb::open(&paths.data.join("containers.redb"))?;
        Ok(Containers { images, db, paths, binaries, log_max_size })
    }

    fn bundle_dir(&self, id: &str) -> PathBuf {
        self.paths.state.join(id)
    }

    /// The shim's directory: its socket, the container's log, its exit record.
    pub fn shim_dir(&self, id: &str) -> PathBuf {
        self.bundle_dir(id).join("shim")
    }

    fn data_dir(&self, id: &str) -> PathBuf {
        self.paths.data.join(id)
    }

    fn runtime_binary(&self, name: &str) -> Result<PathBuf> {
        self.binaries.runtimes.get(name).cloned().ok_or_else(|| Error::Invalid(format!("unknown runtime {name:?} (known: {})", self.binaries.runtimes.keys().cloned().collect::<Vec<_>>().join(", "))))
    }

    pub fn create(&self, options: CreateOptions) -> Result<ContainerRecord> {
        let name = berth_image::Reference::parse(&options.image).map(|r| r.to_string()).map_err(|e| Error::Invalid(e.to_string()))?;
        let image = self.images.images.get(&name)?.ok_or_else(|| Error::NoImage(options.image.clone()))?;
        let runtime = options.runtime.clone().unwrap_or_else(|| self.binaries.default_runtime.clone());
        self.runtime_binary(&runtime)?;
        let id = random_id()?;
        let container_name = options.name.clone().unwrap_or_else(|| short(&id).to_string());
        if !valid_name(&container_name) {
            return Err(Error::Invalid(format!("container name {container_name:?}: use letters, digits, _ . - (starting with a letter or digit)")));
        }
        let hostname = options.hostname.clone().unwrap_or_else(|| short(&id).to_string());
        if !valid_hostname(&hostname) {
            return Err(Error::Invalid(format!("hostname {hostname:?}: use letters, digits, - and .")));
        }
        let run_config = RunConfig::load(&self.images, &image.config)?;
        let command = spec_builder::command(&options, &run_config)?;
        let stop_signal = match run_config.stop_signal.as_deref() {
            Some(signal) => berth_oci::parse_signal(signal).map_err(|e| Error::Invalid(format!("the image's StopSignal: {e}")))?,
            None => libc::SIGTERM,
        };
        let record = ContainerRecord {
            id: id.clone(),
            name: container_name,
            image: name,
            image_manifest: image.manifest.to_string(),
            options: options.clone(),
            command,
            stop_signal,
            runtime,
            state: State::Creating,
            pid: 0,
            exit_code: None,
            created_at: now_ns(),
            started_at: 0,
            finished_at: 0,
        };
        self.db.insert_new(&record)?;
        let kept: Vec<berth_image::Digest> = image.chain_ids.iter().chain([&image.config, &image.manifest]).cloned().collect();
        let made = self.images.images.lease(&lease_id(&id), &kept).map_err(Error::from).and_then(|()| self.materialize(&record, &image, &run_config, &hostname));
        match made {
            Ok(pid) => self.db.update(&id, |r| {
                r.state = State::Created;
                r.pid = pid;
                Ok(())
            }),
            Err(e) => {
                let _ = self.destroy(&record);
                Err(e)
            }
        }
    }

    /// The container's rootfs: the image's snapshots under its own writable layer, in its bundle.
    fn rootfs_layout(&self, id: &str, chain_ids: &[berth_image::Digest]) -> RootfsLayout {
        let data = self.data_dir(id);
        RootfsLayout {
            layers: chain_ids.iter().map(|c| self.images.snapshots.path(c)).collect(),
            upper: data.join("upper"),
            work: data.join("work"),
            target: self.bundle_dir(id).join("rootfs"),
        }
    }

    /// The container's runtime spec (its bundle's config.json).
    pub fn spec(&self, id: &str) -> Result<serde_json::Value> {
        let path = self.bundle_dir(id).join("config.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }

    /// Rootfs, bundle and shim of a new container; the init's pid.
    fn materialize(&self, record: &ContainerRecord, image: &berth_image::meta::ImageRecord, run_config: &RunConfig, hostname: &str) -> Result<i32> {
        let (bundle, data) = (self.bundle_dir(&record.id), self.data_dir(&record.id));
        make_dir(&self.shim_dir(&record.id))?;
        make_dir(&data)?;
        let layout = self.rootfs_layout(&record.id, &image.chain_ids);
        layout.mount()?;
        let user_spec = record.options.user.clone().or_else(|| run_config.user.clone()).unwrap_or_default();
        let user = passwd::resolve(&layout.target, &user_spec)?;
        let etc_files = self.write_etc_files(&bundle, hostname, record.options.network)?;
        let spec = spec_builder::build(&SpecInputs { id: &record.id, options: &record.options, image: run_config, user: &user, hostname, etc_files: &etc_files })?;
        let config = bundle.join("config.json");
        std::fs::write(&config, serde_json::to_vec_pretty(&spec).expect("specs serialize")).map_err(|e| Error::io("write", &config, e))?;
        self.launch_shim(record)
    }

    fn launch_shim(&self, record: &ContainerRecord) -> Result<i32> {
        let shim_dir = self.shim_dir(&record.id);
        let runtime = self.runtime_binary(&record.runtime)?;
        let runtime_root = self.paths.runtime_root.join(&record.runtime);
        launch(
            &self.binaries.shim,
            &Launch {
                id: &record.id,
                bundle: &self.bundle_dir(&record.id),
                shim_dir: &shim_dir,
                runtime: &runtime,
                runtime_root: &runtime_root,
                tty: record.options.tty,
                stdin: record.options.stdin,
                log_max_size: self.log_max_size,
            },
        )
    }

    /// /etc/hosts, /etc/hostname and /etc/resolv.conf for the container, bound read-only: with
    /// the host's network, the host's files; with none, loopback only.
    fn write_etc_files(&self, bundle: &Path, hostname: &str, network: crate::Network) -> Result<Vec<(String, PathBuf)>> {
        let (hosts, resolv) = match network {
            crate::Network::Host => (std::fs::read_to_string("/etc/hosts").unwrap_or_default(), std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
            crate::Network::None => (String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"), String::new()),
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

    /// Brings `record` up to date with its shim: an exit while nobody watched is recorded now.
    pub fn observe(&self, record: ContainerRecord) -> Result<ContainerRecord> {
        if !matches!(record.state, State::Created | State::Running) {
            return Ok(record);
        }
        let shim_dir = self.shim_dir(&record.id);
        match Client::new(&shim_dir).state() {
            Ok(_) => Ok(record),
            Err(_) => {
                let exit = read_exit(&shim_dir);
                if exit.is_none() && shim_alive(&shim_dir) {
                    // Between recording the exit and closing its socket: the record says enough.
                    return Ok(record);
                }
                if exit.is_none() {
                    // The shim died without recording (killed): nothing supervises the container.
                    let _ = self.runtime_command(&record, &["delete", "--force", &record.id]);
                }
                self.record_exit(&record.id, exit)
            }
        }
    }

    fn record_exit(&self, id: &str, exit: Option<Exit>) -> Result<ContainerRecord> {
        self.db.update(id, |r| {
            if matches!(r.state, State::Created | State::Running) {
                r.state = State::Exited;
                r.exit_code = exit.as_ref().map(|e| e.code);
                r.finished_at = exit.as_ref().map(|e| e.exited_at).unwrap_or_else(now_ns);
            }
            Ok(())
        })
    }

    /// Runs the container's runtime binary (with its root) and returns what it printed.
    fn runtime_command(&self, record: &ContainerRecord, args: &[&str]) -> Result<Vec<u8>> {
        let runtime = self.runtime_binary(&record.runtime)?;
        let output = std::process::Command::new(&runtime)
            .arg("--root")
            .arg(self.paths.runtime_root.join(&record.runtime))
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| Error::io("run", &runtime, e))?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(Error::Shim(format!("{} {}: {}", runtime.display(), args.join(" "), String::from_utf8_lossy(&output.stderr).trim())))
        }
    }

    fn running(&self, key: &str) -> Result<ContainerRecord> {
        let record = self.find(key)?;
        if record.state != State::Running {
            return Err(Error::NotRunning(format!("container {} is not running", record.name)));
        }
        Ok(record)
    }

    /// The container's processes: (pid, uid, command line), from the runtime's `ps`.
    pub fn top(&self, key: &str) -> Result<Vec<(i32, u32, String)>> {
        let record = self.running(key)?;
        let listed = self.runtime_command(&record, &["ps", "--format", "json", &record.id])?;
        let pids: Vec<i32> = serde_json::from_slice(&listed).map_err(|e| Error::Shim(format!("the runtime's ps: {e}")))?;
        Ok(pids
            .into_iter()
            .filter_map(|pid| {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().next()).and_then(|u| u.parse().ok())?;
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let command = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect::<Vec<_>>().join(" ");
                Some((pid, uid, command))
            })
            .collect())
    }

    /// One sample of the runtime's `events --stats` (runc's JSON shape), its `data` object.
    pub fn stats(&self, key: &str) -> Result<serde_json::Value> {
        let record = self.running(key)?;
        let sample = self.runtime_command(&record, &["events", "--stats", &record.id])?;
        let event: serde_json::Value = serde_json::from_slice(&sample).map_err(|e| Error::Shim(format!("the runtime's stats: {e}")))?;
        Ok(event["data"].clone())
    }

    pub fn find(&self, key: &str) -> Result<ContainerRecord> {
        self.observe(self.db.find(key)?)
    }

    pub fn list(&self) -> Result<Vec<ContainerRecord>> {
        let mut records = self.db.list()?.into_iter().map(|r| self.observe(r)).collect::<Result<Vec<_>>>()?;
        records.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        Ok(records)
    }

    /// A created container as it is; an exited one created again (same bundle and writable
    /// layer, a new shim), so that its output can be attached to before it starts.
    pub fn prepare(&self, key: &str) -> Result<ContainerRecord> {
        let record = self.find(key)?;
        match record.state {
            State::Created => Ok(record),
            State::Exited => self.recreate(&record),
            State::Running => Err(Error::Conflict(format!("container {} is already running", record.name))),
            State::Creating => Err(Error::Conflict(format!("container {} is still being created", record.name))),
        }
    }

    pub fn start(&self, key: &str) -> Result<ContainerRecord> {
        let record = self.prepare(key)?;
        Client::new(&self.shim_dir(&record.id)).start()?;
        self.db.update(&record.id, |r| {
            r.state = State::Running;
            r.started_at = now_ns();
            Ok(())
        })
    }

    /// An exited container started again: same bundle and writable layer, a new shim.
    fn recreate(&self, record: &ContainerRecord) -> Result<ContainerRecord> {
        let shim_dir = self.shim_dir(&record.id);
        let _ = std::fs::remove_file(shim_dir.join(berth_shim::protocol::EXIT));
        let layout = match self.images.images.get(&record.image)? {
            Some(image) if image.manifest.to_string() == record.image_manifest => self.rootfs_layout(&record.id, &image.chain_ids),
            // The name moved on (or went): the lease still holds the layers the container had.
            _ => return Err(Error::Conflict(format!("image {} changed since container {} was created; create a new container", record.image, record.name))),
        };
        unmount(&layout.target)?;
        layout.mount()?;
        let pid = self.launch_shim(record)?;
        self.db.update(&record.id, |r| {
            r.state = State::Created;
            r.pid = pid;
            r.exit_code = None;
            Ok(())
        })
    }

    pub fn kill(&self, key: &str, signal: i32, all: bool) -> Result<()> {
        let record = self.find(key)?;
        if !matches!(record.state, State::Created | State::Running) {
            return Err(Error::NotRunning(format!("container {} is not running", record.name)));
        }
        Client::new(&self.shim_dir(&record.id)).kill(signal, all)?;
        Ok(())
    }

    /// The stop signal, then after `timeout` SIGKILL to every process; returns once exited.
    pub fn stop(&self, key: &str, timeout: Duration) -> Result<ContainerRecord> {
        let record = self.find(key)?;
        if !matches!(record.state, State::Created | State::Running) {
            return Ok(record);
        }
        let client = Client::new(&self.shim_dir(&record.id));
        // A created container's init waits for `start` and would sit on a polite signal.
        // A zero timeout (`rm -f`, `stop -t 0`) goes straight to SIGKILL.
        let signal = if record.state == State::Created { libc::SIGKILL } else { record.stop_signal };
        if !timeout.is_zero() && client.kill(signal, false).is_ok() && matches!(client.wait(Some(timeout)), Ok(Some(_))) {
            return self.wait(&record.id);
        }
        let _ = client.kill(libc::SIGKILL, true);
        self.wait(&record.id)
    }

    /// Blocks until the container has exited; returns its record then.
    pub fn wait(&self, key: &str) -> Result<ContainerRecord> {
        loop {
            let record = self.find(key)?;
            if !matches!(record.state, State::Created | State::Running) {
                return Ok(record);
            }
            match Client::new(&self.shim_dir(&record.id)).wait(None) {
                Ok(Some(exit)) => return self.record_exit(&record.id, Some(exit)),
                // Gone meanwhile: the next observe reads its exit record.
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    pub fn remove(&self, key: &str, force: bool) -> Result<ContainerRecord> {
        let mut record = self.find(key)?;
        if matches!(record.state, State::Created | State::Running) {
            if !force && record.state == State::Running {
                return Err(Error::Conflict(format!("container {} is {}: stop it first, or remove it with force", record.name, record.state.as_str())));
            }
            record = self.stop(&record.id, Duration::ZERO)?;
        }
        self.destroy(&record)?;
        Ok(record)
    }

    /// Removes everything of a container that is not running: runtime state, rootfs mount,
    /// bundle, writable layer, lease, record — in that order, so a crash leaves a record to retry.
    fn destroy(&self, record: &ContainerRecord) -> Result<()> {
        let _ = self.runtime_command(record, &["delete", "--force", &record.id]);
        let bundle = self.bundle_dir(&record.id);
        unmount(&bundle.join("rootfs"))?;
        for dir in [&bundle, &self.data_dir(&record.id)] {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", dir, e)),
            }
        }
        self.images.images.release(&lease_id(&record.id))?;
        self.db.remove(&record.id)
    }

    /// At berthd's start: undo half-created containers, record exits that happened while it was
    /// down. Running containers are only looked at.
    pub fn recover(&self) -> Result<Recovered> {
        let mut recovered = Recovered::default();
        for record in self.db.list()? {
            match record.state {
                State::Creating => {
                    self.destroy(&record)?;
                    recovered.half_created += 1;
                }
                State::Created | State::Running => match self.observe(record)?.state {
                    State::Exited => recovered.exited_meanwhile += 1,
                    _ => recovered.running += 1,
                },
                State::Exited => {}
            }
        }
        Ok(recovered)
    }

    /// The image names containers were made from (an image in use is not removed).
    pub fn images_in_use(&self) -> Result<Vec<(String, String)>> {
        Ok(self.db.list()?.into_iter().map(|r| (r.image, r.name)).collect())
    }

    /// The process for an exec into a running container: its own process settings (env, user,
    /// capabilities, cwd) with the caller's overrides. Returns the record too (for its shim).
    pub fn exec_process(&self, key: &str, exec: &ExecOptions) -> Result<(ContainerRecord, serde_json::Value)> {
        let record = self.running(key)?;
        if exec.args.is_empty() {
            return Err(Error::Invalid("exec needs a command".into()));
        }
        let config = self.spec(&record.id)?;
        let mut process = config["process"].clone();
        process["args"] = serde_json::json!(exec.args);
        process["terminal"] = serde_json::json!(exec.tty);
        match (exec.tty, exec.console_size) {
            (true, Some((width, height))) => process["consoleSize"] = serde_json::json!({"width": width, "height": height}),
            _ => {
                process.as_object_mut().map(|p| p.remove("consoleSize"));
            }
        }
        if let Some(user) = &exec.user {
            let resolved = passwd::resolve(&self.bundle_dir(&record.id).join("rootfs"), user)?;
            process["user"] = serde_json::json!({"uid": resolved.uid, "gid": resolved.gid, "additionalGids": resolved.additional_gids});
        }
        if let Some(workdir) = &exec.workdir {
            if !workdir.starts_with('/') {
                return Err(Error::Invalid(format!("working directory {workdir} is not absolute")));
            }
            process["cwd"] = serde_json::json!(workdir);
        }
        let base = CreateOptions { env: exec.env.clone(), tty: exec.tty, ..Default::default() };
        let current: Vec<String> = process["env"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect();
        let image_env = RunConfig { env: Some(current), ..Default::default() };
        let hostname = config["hostname"].as_str().unwrap_or_default().to_string();
        process["env"] = serde_json::json!(spec_builder::environment(&base, &image_env, &hostname, "/")?);
        Ok((record, process))
    }
}

/// What `berth exec` may change about the container's process.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub args: Vec<String>,
    pub tty: bool,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub console_size: Option<(u16, u16)>,
}

fn read_exit(shim_dir: &Path) -> Option<Exit> {
    let bytes = std::fs::read(shim_dir.join(berth_shim::protocol::EXIT)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn shim_alive(shim_dir: &Path) -> bool {
    let Some(pid) = std::fs::read_to_string(shim_dir.join(berth_shim::protocol::SHIM_PID)).ok().and_then(|p| p.trim().parse::<i32>().ok()) else { return false };
    // A zombie or a reused pid is not our shim: its command line names our directory.
    std::fs::read(format!("/proc/{pid}/cmdline")).map(|cmd| cmd.windows(shim_dir.as_os_str().len()).any(|w| w == shim_dir.as_os_str().as_encoded_bytes())).unwrap_or(false)
}
