//! A CRI ContainerConfig as a runtime spec, made once the rootfs is mounted (a
//! [`SpecMaker`]): berth's template, then the image's config, then the request — command and
//! args by the Kubernetes rule, env, working dir, user, the pod's namespaces by path (or the
//! node's), hostname, cgroup under the pod's parent, resources (oom_score_adj clamped to what
//! berthd may set), sysctls, security context ([`crate::security`]), mounts and devices
//! ([`crate::mounts`]), terminal, annotations.

use crate::proto::{ContainerConfig, LinuxContainerResources, NamespaceMode};
use berth_containers::blueprint::{SpecContext, SpecMaker};
use berth_containers::image_config::RunConfig;
use berth_containers::pod_namespaces::PodNamespace;
use berth_containers::spec_opts::{self, SpecOpt};
use berth_containers::{Error, Result, SandboxRecord};
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxNamespaceType, LinuxResources, Spec};
use std::path::PathBuf;

pub(crate) struct CriSpec {
    pub config: ContainerConfig,
    pub sandbox: SandboxRecord,
    /// The pod's directory (its /etc files).
    pub pod_dir: PathBuf,
    /// Where the pod's own namespaces are pinned.
    pub namespaces: Vec<(PodNamespace, PathBuf)>,
    /// The PID namespace of the container a TARGET PID mode names (`/proc/<its pid>/ns/pid`).
    pub target_pid: Option<PathBuf>,
}

impl SpecMaker for CriSpec {
    /// Kubernetes' rule: `command` replaces the image's entrypoint (and then its cmd is dropped),
    /// `args` replace its cmd.
    fn command(&self, image: &RunConfig) -> Result<Vec<String>> {
        let config = &self.config;
        let argv: Vec<String> = if !config.command.is_empty() {
            config.command.iter().chain(&config.args).cloned().collect()
        } else {
            let cmd = if config.args.is_empty() { image.cmd.clone().unwrap_or_default() } else { config.args.clone() };
            image.entrypoint.clone().unwrap_or_default().into_iter().chain(cmd).collect()
        };
        if argv.is_empty() {
            return Err(Error::Invalid("no command: the image has no Entrypoint or Cmd and the container config gives none".into()));
        }
        Ok(argv)
    }

    fn spec(self: Box<Self>, context: &SpecContext) -> Result<Spec> {
        let config = &self.config;
        let pod = &self.sandbox.config;
        let linux = config.linux.clone().unwrap_or_default();
        let security = linux.security_context.clone().unwrap_or_default();
        let user = crate::security::user(&security, context.image.user.as_deref(), context.rootfs)?;
        let hostname = pod.hostname();
        let envs: Vec<String> = config.envs.iter().map(|kv| format!("{}={}", kv.key, kv.value)).collect();
        let env = spec_opts::environment(context.image.env.as_deref().unwrap_or_default(), &envs, &hostname, &user.home, config.tty)?;
        let cwd = Some(config.working_dir.clone()).filter(|w| !w.is_empty()).or_else(|| context.image.working_dir.clone()).filter(|w| !w.is_empty());
        let cgroup_parent = pod.cgroup_parent.clone().unwrap_or_else(|| "/berth".into());
        let mut opts: Vec<SpecOpt> = vec![
            spec_opts::with_args(self.command(context.image)?),
            spec_opts::with_env(env),
            spec_opts::with_cwd(cwd.unwrap_or_else(|| "/".into())),
            spec_opts::with_user(&user),
            spec_opts::with_root("rootfs", security.readonly_rootfs),
            spec_opts::with_cgroups_path(PathBuf::from(cgroup_parent).join(context.id)),
        ];
        opts.extend(crate::security::options(&security)?);
        opts.extend(namespaces(&self, security.namespace_options.as_ref().map_or(NamespaceMode::Pod as i32, |o| o.pid)));
        // Only in a UTS namespace of the pod's own (set there already; the runtime sets it
        // again): a runtime refuses a hostname in the node's.
        if self.namespaces.iter().any(|(kind, _)| *kind == PodNamespace::Uts) {
            opts.push(spec_opts::with_hostname(hostname));
        }
        if let Some(resources) = &linux.resources {
            let (update, oom_score_adj) = resources_of(resources)?;
            opts.push(spec_opts::with_resources(update));
            if let Some(score) = oom_score_adj {
                opts.push(spec_opts::with_oom_score_adj(score));
            }
        }
        if !pod.sysctls.is_empty() {
            opts.push(spec_opts::with_sysctls(pod.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())).collect()));
        }
        opts.extend(crate::mounts::options(config, &self.pod_dir, security.readonly_rootfs));
        if config.tty {
            opts.push(spec_opts::with_terminal(None));
        }
        opts.push(spec_opts::with_annotations(config.annotations.clone().into_iter().collect()));
        spec_opts::build(opts)
    }
}

/// Network, IPC and UTS: the pod's (by path) or the node's. PID: the node's, the pod's (whose init
/// is berth's infra process) when the pod shares one, another container's (TARGET), or its own.
/// User: the pod's when it has one (the container's own namespaces are then made in it).
fn namespaces(spec: &CriSpec, pid: i32) -> Vec<SpecOpt> {
    let pod = &spec.sandbox.config;
    let mut opts = Vec::new();
    for (kind, typ, host) in [
        (PodNamespace::Net, LinuxNamespaceType::Network, pod.host_network),
        (PodNamespace::Ipc, LinuxNamespaceType::Ipc, pod.host_ipc),
        (PodNamespace::Uts, LinuxNamespaceType::Uts, pod.host_network),
    ] {
        let path = spec.namespaces.iter().find(|(k, _)| *k == kind).map(|(_, p)| p.clone());
        opts.push(spec_opts::with_namespace(typ, path, host));
    }
    let pod_pid = spec.namespaces.iter().find(|(k, _)| *k == PodNamespace::Pid).map(|(_, p)| p.clone());
    let path = match pid {
        _ if pod.host_pid || pid == NamespaceMode::Node as i32 => None,
        mode if mode == NamespaceMode::Target as i32 => spec.target_pid.clone(),
        mode if mode == NamespaceMode::Pod as i32 => pod_pid,
        _ => None,
    };
    opts.push(spec_opts::with_namespace(LinuxNamespaceType::Pid, path, pod.host_pid || pid == NamespaceMode::Node as i32));
    let user = spec.namespaces.iter().find(|(k, _)| *k == PodNamespace::User).map(|(_, p)| p.clone());
    if let Some((path, ids)) = user.zip(pod.user_namespace) {
        opts.push(spec_opts::with_user_namespace(path, ids));
    }
    opts
}

/// The lowest oom_score_adj berthd may give (its own: lowering it needs CAP_SYS_RESOURCE, which
/// root lacks on some machines, and the kubelet asks for -997/-998), as containerd's
/// `restrict_oom_score_adj` does.
fn lowest_oom_score_adj() -> i32 {
    std::fs::read_to_string("/proc/self/oom_score_adj").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(-1000)
}

/// Whether this host has the hugetlb controller. The kubelet sends a limit for every page size
/// the node has (0 when the pod asked for none), controller or not; where there is none the limits
/// are dropped (there is nothing to enforce them with), as containerd and CRI-O do, rather than
/// failing every container.
fn hugetlb_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let available = berth_cgroups::Hierarchy::detect().is_ok_and(|h| h.has_controller("hugetlb"));
        if !available {
            tracing::info!("no hugetlb cgroup controller on this host: the CRI's hugepage limits are ignored");
        }
        available
    })
}

/// The CRI's resources as the spec's: unset (zero) values stay unset; the OOM score apart.
pub(crate) fn resources_of(r: &LinuxContainerResources) -> Result<(LinuxResources, Option<i32>)> {
    let mut resources = LinuxResources::default();
    let mut cpu = LinuxCpu::default();
    let mut any_cpu = false;
    if r.cpu_shares > 0 {
        cpu.set_shares(Some(r.cpu_shares as u64));
        any_cpu = true;
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
        any_cpu = true;
    }
    if r.cpu_period > 0 {
        cpu.set_period(Some(r.cpu_period as u64));
        any_cpu = true;
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
        any_cpu = true;
    }
    if !r.cpuset_mems.is_empty() {
        cpu.set_mems(Some(r.cpuset_mems.clone()));
        any_cpu = true;
    }
    if any_cpu {
        resources.set_cpu(Some(cpu));
    }
    if r.memory_limit_in_bytes > 0 || r.memory_swap_limit_in_bytes > 0 {
        let mut memory = LinuxMemory::default();
        if r.memory_limit_in_bytes > 0 {
            memory.set_limit(Some(r.memory_limit_in_bytes));
        }
        if r.memory_swap_limit_in_bytes > 0 {
            memory.set_swap(Some(r.memory_swap_limit_in_bytes));
        }
        resources.set_memory(Some(memory));
    }
    if !r.hugepage_limits.is_empty() && hugetlb_available() {
        let limits = r
            .hugepage_limits
            .iter()
            .map(|h| {
                let mut limit = LinuxHugepageLimit::default();
                limit.set_page_size(h.page_size.clone());
                limit.set_limit(i64::try_from(h.limit).map_err(|_| Error::Invalid(format!("hugepage limit {} is too large", h.limit)))?);
                Ok(limit)
            })
            .collect::<Result<Vec<_>>>()?;
        resources.set_hugepage_limits(Some(limits));
    }
    if !r.unified.is_empty() {
        resources.set_unified(Some(r.unified.clone()));
    }
    let oom_score_adj = (r.oom_score_adj != 0).then(|| (r.oom_score_adj.clamp(-1000, 1000) as i32).max(lowest_oom_score_adj()));
    Ok((resources, oom_score_adj))
}
