//! The CRI end to end through a real gRPC client (k8s-cri's) on berthd's socket, with real pods
//! and containers from an image pulled from a private registry: every RPC berth implements, the
//! ones it does not (UNIMPLEMENTED), bad input (unknown ids, a missing image, hostile configs),
//! kill -9 of berthd with a pod running. The leak check at the end of each: no namespace pins,
//! mounts, writable layers, shims or state left.

use berth_cri::proto::image_service_client::ImageServiceClient;
use berth_cri::proto::runtime_service_client::RuntimeServiceClient;
use berth_cri::proto::*;
use berth_testsupport::{busybox_registry, Berthd, TestEnv};
use tonic::transport::Channel;
use tonic::Code;

struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

async fn connect(berthd: &Berthd) -> Cri {
    let channel = berth_api::connect(&berthd.socket).await.expect("connect to berthd");
    Cri { runtime: RuntimeServiceClient::new(channel.clone()), images: ImageServiceClient::new(channel) }
}

fn pod_config(env: &TestEnv, name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata { name: name.into(), namespace: "default".into(), uid: format!("uid-{name}"), attempt: 0 }),
        hostname: format!("{name}-host"),
        log_directory: env.dir.join("logs").join(name).display().to_string(),
        dns_config: Some(DnsConfig { servers: vec!["10.0.0.10".into()], searches: vec!["svc.example".into()], options: vec!["ndots:5".into()] }),
        labels: [("app".to_string(), name.to_string())].into_iter().collect(),
        linux: Some(LinuxPodSandboxConfig {
            sysctls: [("kernel.shmmni".to_string(), "1234".to_string())].into_iter().collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(image: &str, name: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(ImageSpec { image: image.into(), ..Default::default() }),
        command: command.iter().map(|s| s.to_string()).collect(),
        envs: vec![KeyValue { key: "GREETING".into(), value: "hello".into() }],
        labels: [("role".to_string(), name.to_string())].into_iter().collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

impl Cri {
    async fn exec(&mut self, id: &str, cmd: &[&str]) -> ExecSyncResponse {
        let request = ExecSyncRequest { container_id: id.into(), cmd: cmd.iter().map(|s| s.to_string()).collect(), timeout: 10 };
        self.runtime.exec_sync(request).await.expect("exec_sync").into_inner()
    }

    async fn status(&mut self, id: &str) -> ContainerStatus {
        let request = ContainerStatusRequest { container_id: id.into(), verbose: false };
        self.runtime.container_status(request).await.expect("container status").into_inner().status.expect("a status")
    }

    async fn run_pod(&mut self, config: &PodSandboxConfig) -> String {
        let request = RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() };
        self.runtime.run_pod_sandbox(request).await.expect("run pod").into_inner().pod_sandbox_id
    }

    async fn create(&mut self, pod: &str, pod_config: &PodSandboxConfig, config: ContainerConfig) -> Result<String, tonic::Status> {
        let request = CreateContainerRequest { pod_sandbox_id: pod.into(), config: Some(config), sandbox_config: Some(pod_config.clone()) };
        self.runtime.create_container(request).await.map(|r| r.into_inner().container_id)
    }

    async fn start(&mut self, id: &str) {
        self.runtime.start_container(StartContainerRequest { container_id: id.into() }).await.expect("start");
    }

    async fn pods(&mut self) -> Vec<PodSandbox> {
        self.runtime.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await.unwrap().into_inner().items
    }

    async fn containers(&mut self, filter: Option<ContainerFilter>) -> Vec<Container> {
        self.runtime.list_containers(ListContainersRequest { filter }).await.unwrap().into_inner().containers
    }

    /// In pod a, a server of `line` on :8080 (busybox httpd); in pod b, a client that waits.
    async fn server_and_client(&mut self, image: &str, a: (&str, &PodSandboxConfig), b: (&str, &PodSandboxConfig), line: &str) -> (String, String) {
        let serve = format!("echo {line} > /tmp/index.html; exec httpd -f -p 8080 -h /tmp");
        let server = self.create(a.0, a.1, container_config(image, "server", &["sh", "-c", &serve])).await.unwrap();
        let client = self.create(b.0, b.1, container_config(image, "client", &["sleep", "300"])).await.unwrap();
        self.start(&server).await;
        self.start(&client).await;
        (server, client)
    }

    /// What `url` answers from inside container `from`, tried for up to ~10 s (the server may
    /// not listen yet); empty if never.
    async fn fetch(&mut self, from: &str, url: &str) -> String {
        for _ in 0..100 {
            // (busybox's wget -T crashes on an IPv6 literal: timeout bounds it instead.)
            let fetched = text(&self.exec(from, &["timeout", "5", "wget", "-q", "-O", "-", url]).await.stdout);
            if !fetched.is_empty() {
                return fetched;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        String::new()
    }

    async fn pull(&mut self, image: &str) -> String {
        let request = PullImageRequest { image: Some(ImageSpec { image: image.into(), ..Default::default() }), ..Default::default() };
        self.images.pull_image(request).await.expect("pull").into_inner().image_ref
    }
}

/// A test's own berthd (pulling from its own registry) and a client; the image's name.
async fn setup(name: &str) -> (TestEnv, berth_testsupport::Registry, Berthd, Cri, String) {
    let env = TestEnv::new(name);
    let registry = busybox_registry(&env);
    let berthd = Berthd::start(&env, &[&registry.address]);
    let cri = connect(&berthd).await;
    let image = format!("{}/test/busybox:v1", registry.address);
    (env, registry, berthd, cri, image)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_of_two_containers_runs_through_the_cri() {
    let (env, registry, berthd, mut cri, image) = setup("cri-pod").await;

    let version = cri.runtime.version(VersionRequest { version: String::new() }).await.unwrap().into_inner();
    assert_eq!((version.runtime_name.as_str(), version.runtime_api_version.as_str()), ("berth", "v1"));
    let status = cri.runtime.status(StatusRequest { verbose: true }).await.unwrap().into_inner();
    let conditions = status.status.unwrap().conditions;
    assert!(conditions.iter().any(|c| c.r#type == "RuntimeReady" && c.status));
    assert!(conditions.iter().any(|c| c.r#type == "NetworkReady" && !c.status && !c.reason.is_empty()), "NetworkReady says why not");
    assert!(status.runtime_handlers.iter().any(|h| h.name == "runc") && status.info.contains_key("config"));
    let config = cri.runtime.runtime_config(RuntimeConfigRequest {}).await.unwrap().into_inner();
    assert_eq!(config.linux.unwrap().cgroup_driver, CgroupDriver::Cgroupfs as i32);

    // Images: pulled, found by name, id and repo digest, listed.
    let image_id = cri.pull(&image).await;
    assert!(image_id.starts_with("sha256:"), "{image_id}");
    for key in [image.clone(), image_id.clone()] {
        let request = ImageStatusRequest { image: Some(ImageSpec { image: key.clone(), ..Default::default() }), verbose: false };
        let found = cri.images.image_status(request).await.unwrap().into_inner().image.unwrap_or_else(|| panic!("image {key}"));
        assert_eq!(found.id, image_id);
        assert_eq!(found.repo_tags, std::slice::from_ref(&image));
        assert!(found.repo_digests[0].starts_with(&format!("{}/test/busybox@sha256:", registry.address)));
    }
    let missing = ImageStatusRequest { image: Some(ImageSpec { image: "nothing/here:1".into(), ..Default::default() }), verbose: false };
    assert!(cri.images.image_status(missing).await.unwrap().into_inner().image.is_none(), "a missing image is an empty answer");
    assert_eq!(cri.images.list_images(ListImagesRequest { filter: None }).await.unwrap().into_inner().images.len(), 1);
    let fs = cri.images.image_fs_info(ImageFsInfoRequest {}).await.unwrap().into_inner();
    assert!(fs.image_filesystems[0].used_bytes.unwrap().value > 0);

    // A pod: its hostname, DNS, sysctl; two containers sharing its namespaces.
    let pod_config = pod_config(&env, "web");
    let pod = cri.run_pod(&pod_config).await;
    let first =
        cri.create(&pod, &pod_config, container_config(&image, "first", &["sh", "-c", "echo $GREETING from $(hostname); sleep 300"])).await.unwrap();
    // What a kubelet sends for a best-effort container: cpu shares 2 and a hugepage limit of 0 for
    // each page size the node has, whether or not it has the hugetlb controller (this host has not;
    // the limits are then dropped, not the container).
    let mut second_config = container_config(&image, "second", &["sleep", "300"]);
    second_config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            cpu_shares: 2,
            hugepage_limits: vec![HugepageLimit { page_size: "2MB".into(), limit: 0 }, HugepageLimit { page_size: "1GB".into(), limit: 0 }],
            ..Default::default()
        }),
        ..Default::default()
    });
    let second = cri.create(&pod, &pod_config, second_config).await.unwrap();
    let taken = cri.create(&pod, &pod_config, container_config(&image, "second", &["sleep", "300"])).await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    assert_eq!(cri.status(&first).await.state, ContainerState::ContainerCreated as i32);
    cri.start(&first).await;
    cri.start(&second).await;
    let running = cri.status(&first).await;
    assert_eq!(running.state, ContainerState::ContainerRunning as i32);
    assert_eq!(running.metadata.unwrap().name, "first");
    assert_eq!(running.image_ref, image_id);

    assert_eq!(text(&cri.exec(&first, &["hostname"]).await.stdout), "web-host");
    let resolv = text(&cri.exec(&second, &["cat", "/etc/resolv.conf"]).await.stdout);
    assert!(resolv.contains("nameserver 10.0.0.10") && resolv.contains("search svc.example") && resolv.contains("options ndots:5"), "{resolv}");
    assert_eq!(text(&cri.exec(&first, &["cat", "/proc/sys/kernel/shmmni"]).await.stdout), "1234");
    let ns = |out: ExecSyncResponse| text(&out.stdout);
    for kind in ["net", "ipc", "uts"] {
        let path = format!("/proc/self/ns/{kind}");
        let (a, b) = (ns(cri.exec(&first, &["readlink", &path]).await), ns(cri.exec(&second, &["readlink", &path]).await));
        assert_eq!(a, b, "the pod's {kind} namespace is shared");
    }
    let nnp = text(&cri.exec(&first, &["grep", "NoNewPrivs", "/proc/self/status"]).await.stdout);
    assert_eq!(nnp.split_whitespace().last(), Some("0"), "no_new_privs unset in the request is off (setuid binaries work)");
    let lo = text(&cri.exec(&first, &["cat", "/sys/class/net/lo/operstate"]).await.stdout);
    assert_ne!(lo, "down", "loopback is up in the pod");
    let failed = cri.exec(&first, &["sh", "-c", "echo oops >&2; exit 3"]).await;
    assert_eq!((failed.exit_code, text(&failed.stderr).as_str()), (3, "oops"));
    let slow = ExecSyncRequest { container_id: first.clone(), cmd: vec!["sleep".into(), "30".into()], timeout: 1 };
    let timed_out = cri.runtime.exec_sync(slow).await.unwrap_err();
    assert_eq!(timed_out.code(), Code::DeadlineExceeded, "{timed_out:?}");

    // The log, in the CRI format, under the pod's log directory.
    let log = env.dir.join("logs/web/first.log");
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("hello from web-host") {
        assert!(started.elapsed().as_secs() < 10, "no log line in {}", log.display());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(std::fs::read_to_string(&log).unwrap().contains(" stdout F hello from web-host"));
    cri.runtime.reopen_container_log(ReopenContainerLogRequest { container_id: first.clone() }).await.unwrap();

    // Lists and filters, stats.
    assert_eq!(cri.pods().await.len(), 1);
    let by_label = ContainerFilter { label_selector: [("role".to_string(), "second".to_string())].into_iter().collect(), ..Default::default() };
    assert_eq!(cri.containers(Some(by_label)).await.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), std::slice::from_ref(&second));
    let by_pod = ContainerFilter { pod_sandbox_id: pod[..12].to_string(), ..Default::default() };
    assert_eq!(cri.containers(Some(by_pod)).await.len(), 2);
    let stats = cri.runtime.container_stats(ContainerStatsRequest { container_id: first.clone() }).await.unwrap().into_inner().stats.unwrap();
    assert!(stats.memory.unwrap().usage_bytes.unwrap().value > 0);
    let pod_stats = cri.runtime.list_pod_sandbox_stats(ListPodSandboxStatsRequest { filter: None }).await.unwrap().into_inner().stats;
    assert_eq!(pod_stats[0].linux.as_ref().unwrap().containers.len(), 2);

    // Stop (idempotent), remove (idempotent); the pod stopped then removed (idempotent).
    for _ in 0..2 {
        cri.runtime.stop_container(StopContainerRequest { container_id: first.clone(), timeout: 1 }).await.unwrap();
    }
    let stopped = cri.status(&first).await;
    assert_eq!((stopped.state, stopped.reason.as_str()), (ContainerState::ContainerExited as i32, "Error"));
    assert!(stopped.finished_at >= stopped.started_at && stopped.exit_code != 0);
    for _ in 0..2 {
        cri.runtime.remove_container(RemoveContainerRequest { container_id: first.clone() }).await.unwrap();
    }
    for _ in 0..2 {
        cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    }
    let pod_status = cri.runtime.pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: pod.clone(), verbose: false }).await.unwrap();
    assert_eq!(pod_status.into_inner().status.unwrap().state, PodSandboxState::SandboxNotready as i32);
    assert_eq!(cri.status(&second).await.state, ContainerState::ContainerExited as i32, "stopping the pod stopped its containers");
    for _ in 0..2 {
        cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    }
    assert!(cri.pods().await.is_empty() && cri.containers(None).await.is_empty());
    cri.images.remove_image(RemoveImageRequest { image: Some(ImageSpec { image: image_id.clone(), ..Default::default() }) }).await.unwrap();
    cri.images.remove_image(RemoveImageRequest { image: Some(ImageSpec { image: image_id, ..Default::default() }) }).await.unwrap();
    assert!(cri.images.list_images(ListImagesRequest { filter: None }).await.unwrap().into_inner().images.is_empty());
    drop(berthd);
    env.leak_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_leave_nothing() {
    let (env, _registry, berthd, mut cri, image) = setup("cri-bad").await;
    cri.pull(&image).await;

    // Unknown ids: NotFound for reads, fine for stop and remove.
    let unknown = "0123456789abcdef".to_string();
    let missing = cri.runtime.container_status(ContainerStatusRequest { container_id: unknown.clone(), verbose: false }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let missing = cri.runtime.pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: unknown.clone(), verbose: false }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    cri.runtime.stop_container(StopContainerRequest { container_id: unknown.clone(), timeout: 0 }).await.unwrap();
    cri.runtime.remove_container(RemoveContainerRequest { container_id: unknown.clone() }).await.unwrap();
    cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: unknown.clone() }).await.unwrap();
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: unknown.clone() }).await.unwrap();

    // Streaming URLs are for what exists.
    let exec = cri
        .runtime
        .exec(ExecRequest { container_id: unknown.clone(), cmd: vec!["sh".into()], stdout: true, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(exec.code(), Code::NotFound);
    let forward = cri.runtime.port_forward(PortForwardRequest { pod_sandbox_id: unknown.clone(), port: vec![80] }).await.unwrap_err();
    assert_eq!(forward.code(), Code::NotFound);
    // What berth does not do: UNIMPLEMENTED, never a hang or another code.
    let metrics = cri.runtime.list_metric_descriptors(ListMetricDescriptorsRequest {}).await.unwrap_err();
    assert_eq!(metrics.code(), Code::Unimplemented);

    // Hostile pods: a sysctl outside the pod's namespaces, an unknown handler.
    let mut bad_pod = pod_config(&env, "bad");
    bad_pod.linux.as_mut().unwrap().sysctls = [("kernel.panic".to_string(), "1".to_string())].into_iter().collect();
    let refused = cri.runtime.run_pod_sandbox(RunPodSandboxRequest { config: Some(bad_pod), runtime_handler: String::new() }).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let handler = RunPodSandboxRequest { config: Some(pod_config(&env, "bad")), runtime_handler: "nosuch".into() };
    assert_eq!(cri.runtime.run_pod_sandbox(handler).await.unwrap_err().code(), Code::InvalidArgument);

    // Hostile containers in a good pod.
    let pod_config = pod_config(&env, "good");
    let pod = cri.run_pod(&pod_config).await;
    let mut escape = container_config(&image, "escape", &["true"]);
    escape.mounts = vec![Mount { container_path: "/data".into(), host_path: format!("{}/../../etc", env.dir.display()), ..Default::default() }];
    let mut log_out = container_config(&image, "log-out", &["true"]);
    log_out.log_path = "../../outside.log".into();
    let mut env_flood = container_config(&image, "env-flood", &["true"]);
    env_flood.envs = (0..100_000).map(|i| KeyValue { key: format!("K{i}"), value: "v".into() }).collect();
    let no_image = container_config("nothing/here:1", "no-image", &["true"]);
    let mut group_only = container_config(&image, "group-only", &["true"]);
    group_only.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext { run_as_group: Some(Int64Value { value: 5 }), ..Default::default() }),
        ..Default::default()
    });
    let cases = [
        (escape, Code::InvalidArgument),
        (log_out, Code::InvalidArgument),
        (env_flood, Code::InvalidArgument),
        (no_image, Code::NotFound),
        (group_only, Code::InvalidArgument),
    ];
    for (config, code) in cases {
        let name = config.metadata.as_ref().unwrap().name.clone();
        let refused = cri.create(&pod, &pod_config, config).await.unwrap_err();
        assert_eq!(refused.code(), code, "{name}: {refused:?}");
    }
    assert!(cri.containers(None).await.is_empty(), "nothing half made");
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod }).await.unwrap();
    drop(berthd);
    env.leak_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berthd_killed_with_a_pod_running_finds_it_again_untouched() {
    let (env, registry, mut berthd, mut cri, image) = setup("cri-restart").await;
    cri.pull(&image).await;
    let pod_config = pod_config(&env, "survivor");
    let pod = cri.run_pod(&pod_config).await;
    let container = cri.create(&pod, &pod_config, container_config(&image, "app", &["sleep", "300"])).await.unwrap();
    cri.start(&container).await;
    let before = cri.status(&container).await;
    let boot_id = text(&cri.exec(&container, &["cat", "/proc/1/stat"]).await.stdout);

    berthd.child.kill().unwrap();
    berthd.child.wait().unwrap();
    let berthd = Berthd::start(&env, &[&registry.address]);
    let mut cri = connect(&berthd).await;
    assert_eq!(cri.pods().await.iter().map(|p| (p.id.clone(), p.state)).collect::<Vec<_>>(), [(pod.clone(), PodSandboxState::SandboxReady as i32)]);
    let after = cri.status(&container).await;
    assert_eq!((after.state, after.started_at), (before.state, before.started_at), "the same container, still running");
    assert_eq!(text(&cri.exec(&container, &["cat", "/proc/1/stat"]).await.stdout), boot_id, "its init untouched");
    cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod }).await.unwrap();
    drop(berthd);
    env.leak_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_network_pod_has_the_nodes_network_and_name() {
    let (env, _registry, berthd, mut cri, image) = setup("cri-hostnet").await;
    cri.pull(&image).await;
    let mut pod_config = pod_config(&env, "hostnet");
    let linux = pod_config.linux.get_or_insert_with(Default::default);
    linux.sysctls.clear();
    linux.security_context = Some(LinuxSandboxSecurityContext {
        namespace_options: Some(NamespaceOption { network: NamespaceMode::Node as i32, ..Default::default() }),
        ..Default::default()
    });
    let pod = cri.run_pod(&pod_config).await;
    let container = cri.create(&pod, &pod_config, container_config(&image, "app", &["sleep", "300"])).await.unwrap();
    cri.start(&container).await;
    let host_name = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
    assert_eq!(text(&cri.exec(&container, &["hostname"]).await.stdout), host_name);
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap().display().to_string();
    assert_eq!(text(&cri.exec(&container, &["readlink", "/proc/self/ns/net"]).await.stdout), host_net);
    let status = cri.runtime.pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: pod.clone(), verbose: false }).await.unwrap();
    let options = status.into_inner().status.unwrap().linux.unwrap().namespaces.unwrap().options.unwrap();
    assert_eq!(options.network, NamespaceMode::Node as i32);
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod }).await.unwrap();
    drop(berthd);
    env.leak_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_sharing_its_pid_namespace_has_berths_infra_as_init() {
    let (env, _registry, berthd, mut cri, image) = setup("cri-sharedpid").await;
    cri.pull(&image).await;
    let mut pod_config = pod_config(&env, "sharedpid");
    pod_config.linux.get_or_insert_with(Default::default).security_context = Some(LinuxSandboxSecurityContext {
        namespace_options: Some(NamespaceOption { pid: NamespaceMode::Pod as i32, ..Default::default() }),
        ..Default::default()
    });
    let pod = cri.run_pod(&pod_config).await;
    let infra_pid: i32 = std::fs::read_to_string(berthd.state.join("containers").join(&pod).join("infra.pid")).unwrap().trim().parse().unwrap();
    let mut ids = Vec::new();
    for name in ["one", "two"] {
        let mut config = container_config(&image, name, &["sleep", "300"]);
        config.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption { pid: NamespaceMode::Pod as i32, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let id = cri.create(&pod, &pod_config, config).await.unwrap();
        cri.start(&id).await;
        ids.push(id);
    }
    let init = text(&cri.exec(&ids[0], &["cat", "/proc/1/cmdline"]).await.stdout);
    assert!(init.contains("berth-shim") && init.contains("--infra"), "PID 1 is berth's infra: {init:?}");
    let sleepers = text(&cri.exec(&ids[1], &["sh", "-c", "pidof sleep | wc -w"]).await.stdout);
    assert_eq!(sleepers, "2", "each container sees the other's process");
    // The infra is shut in an empty directory as nobody: a container allowed to ptrace (whose
    // root may then open /proc/1/root) finds nothing of the host there.
    let mut tracer = container_config(&image, "tracer", &["sleep", "300"]);
    tracer.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption { pid: NamespaceMode::Pod as i32, ..Default::default() }),
            capabilities: Some(Capability { add_capabilities: vec!["SYS_PTRACE".into()], ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let tracer = cri.create(&pod, &pod_config, tracer).await.unwrap();
    cri.start(&tracer).await;
    let seen = cri.exec(&tracer, &["sh", "-c", "ls -A /proc/1/root/; echo listed; grep Uid /proc/1/status"]).await;
    let seen = text(&seen.stdout);
    assert!(seen.starts_with("listed") && seen.contains("65534"), "the infra's root is empty and it is nobody: {seen:?}");
    cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    // Killed at once; reaped by whoever adopted it (the machine's init) a moment later.
    let started = std::time::Instant::now();
    while std::fs::read_to_string(format!("/proc/{infra_pid}/stat"))
        .is_ok_and(|s| !s.rsplit(')').next().unwrap_or_default().trim_start().starts_with('Z'))
    {
        assert!(started.elapsed().as_secs() < 5, "stopping the pod ends its infra");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod }).await.unwrap();
    drop(berthd);
    env.leak_check();
}

/// A berthd whose node network is `conflist` (in a conf dir of the test's own), the host's network
/// state snapshotted first for the leak check, a client, and the test image pulled.
async fn berthd_on_a_pod_network(
    env: &TestEnv,
    registry: &berth_testsupport::Registry,
    conflist: &serde_json::Value,
) -> (berth_testsupport::HostNetwork, Berthd, Cri, String) {
    let conf_dir = env.dir.join("net.d");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::write(conf_dir.join("10-test.conflist"), conflist.to_string()).unwrap();
    let host = berth_testsupport::HostNetwork::snapshot();
    let berthd = Berthd::start_with(env, &[&registry.address], &format!("cni_conf_dir = {conf_dir:?}\n"), None);
    let mut cri = connect(&berthd).await;
    let image = format!("{}/test/busybox:v1", registry.address);
    cri.pull(&image).await;
    (host, berthd, cri, image)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_a_cni_bridge_reach_each_other_and_a_host_port_reaches_a_pod() {
    let env = TestEnv::new("cri-cni");
    let registry = busybox_registry(&env);
    let pid = std::process::id();
    let (bridge, subnet, ipam, host_port) =
        (format!("bcri{}", pid % 100_000), format!("10.232.{}.0/24", pid % 250), env.dir.join("ipam"), 20_000 + (pid % 10_000) as i32);
    let conflist = serde_json::json!({"cniVersion": "1.0.0", "name": "berth-cri-test", "plugins": [
        {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": ipam}},
        {"type": "portmap", "capabilities": {"portMappings": true}}]});
    let (host, berthd, mut cri, image) = berthd_on_a_pod_network(&env, &registry, &conflist).await;
    let status = cri.runtime.status(StatusRequest { verbose: false }).await.unwrap().into_inner();
    assert!(status.status.unwrap().conditions.iter().any(|c| c.r#type == "NetworkReady" && c.status), "a usable CNI config: NetworkReady");

    // Pod a serves on 8080 (published on 127.0.0.1:host_port); pod b fetches from it by IP.
    let mut a_config = pod_config(&env, "web");
    a_config.port_mappings = vec![PortMapping { protocol: Protocol::Tcp as i32, container_port: 8080, host_port, host_ip: "127.0.0.1".into() }];
    let b_config = pod_config(&env, "client");
    let (a, b) = (cri.run_pod(&a_config).await, cri.run_pod(&b_config).await);
    let pod_ip = |status: PodSandboxStatusResponse| status.status.unwrap().network.unwrap().ip;
    let a_ip =
        pod_ip(cri.runtime.pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: a.clone(), verbose: false }).await.unwrap().into_inner());
    let b_ip =
        pod_ip(cri.runtime.pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: b.clone(), verbose: false }).await.unwrap().into_inner());
    let prefix = subnet.trim_end_matches("0/24");
    assert!(a_ip.starts_with(prefix) && b_ip.starts_with(prefix) && a_ip != b_ip, "pod IPs {a_ip} {b_ip} from {subnet}");
    let (server, client) = cri.server_and_client(&image, (&a, &a_config), (&b, &b_config), "hello from web").await;
    assert!(text(&cri.exec(&server, &["ip", "-o", "addr", "show", "eth0"]).await.stdout).contains(&format!("{a_ip}/24")));
    let fetched = cri.fetch(&client, &format!("http://{a_ip}:8080/")).await;
    // Tried a few times, each bounded: under the VM's emulation one try can outlast its bound.
    let mut from_host = String::new();
    for _ in 0..5 {
        let out = std::process::Command::new("timeout")
            .args(["10", "busybox", "wget", "-q", "-O", "-", &format!("http://127.0.0.1:{host_port}/")])
            .output()
            .unwrap();
        from_host = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !from_host.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    for pod in [&a, &b] {
        cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    }
    let stopped = cri.runtime.pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: a.clone(), verbose: false }).await.unwrap();
    let stopped_ip = pod_ip(stopped.into_inner());
    for pod in [&a, &b] {
        cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    }
    drop(berthd);
    let leaks = host.leaks_then_restore(&bridge, &ipam, &[a.clone(), b.clone()]);
    assert_eq!(fetched, "hello from web", "pod b to pod a by IP");
    assert_eq!(from_host, "hello from web", "the host to pod a through 127.0.0.1:{host_port}");
    assert_eq!(stopped_ip, "", "a stopped pod's address is released");
    assert!(leaks.is_empty(), "left behind:\n{}", leaks.join("\n"));
    env.leak_check();
}

/// Hostile CNI configs and plugins, through berthd's CRI: a conflist that is not JSON leaves the
/// network not ready (the file named) and pods with loopback only; a plugin's error JSON reaches
/// the kubelet as the plugin said it; a plugin that prints 100 MB is cut at the cap. No failed pod
/// is left half made, and berthd's memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_cni_configs_and_plugins_get_clear_errors_through_the_cri() {
    let env = TestEnv::new("cri-cni-hostile");
    let registry = busybox_registry(&env);
    let (conf_dir, bin) = (env.dir.join("net.d"), env.dir.join("cni-bin"));
    for dir in [&conf_dir, &bin] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(conf_dir.join("10-broken.conflist"), "{ not json").unwrap();
    let plugin = |name: &str, body: &str| {
        std::fs::write(bin.join(name), format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(bin.join(name), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    // ADD fails or floods; DEL (the undo) succeeds.
    plugin(
        "refuser",
        "[ \"$CNI_COMMAND\" = ADD ] || exit 0\necho '{\"cniVersion\": \"1.0.0\", \"code\": 11, \"msg\": \"no addresses left in the pool\"}'\nexit 1",
    );
    plugin("flooder", "[ \"$CNI_COMMAND\" = ADD ] || exit 0\nhead -c 100000000 /dev/zero");
    let extra = format!("cni_conf_dir = {conf_dir:?}\ncni_bin_dirs = [{bin:?}]\n");
    let berthd = Berthd::start_with(&env, &[&registry.address], &extra, None);
    let mut cri = connect(&berthd).await;
    let ready = |status: StatusResponse| status.status.unwrap().conditions.into_iter().find(|c| c.r#type == "NetworkReady").unwrap();
    let not_ready = ready(cri.runtime.status(StatusRequest { verbose: false }).await.unwrap().into_inner());
    let loopback_only = cri.run_pod(&pod_config(&env, "lo-only")).await;
    let ip = cri.runtime.pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: loopback_only.clone(), verbose: false }).await.unwrap();
    let ip = ip.into_inner().status.unwrap().network.unwrap().ip;
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: loopback_only }).await.unwrap();

    let peak = berth_testsupport::PeakRss::start(berthd.child.id());
    let mut refused = Vec::new();
    for (name, typ) in [("refused", "refuser"), ("flooded", "flooder")] {
        let conflist = serde_json::json!({"cniVersion": "1.0.0", "name": name, "plugins": [{"type": typ}]});
        std::fs::write(conf_dir.join("05-hostile.conflist"), conflist.to_string()).unwrap();
        let request = RunPodSandboxRequest { config: Some(pod_config(&env, name)), runtime_handler: String::new() };
        refused.push(cri.runtime.run_pod_sandbox(request).await.unwrap_err());
    }
    let grew = peak.grown_kib();
    let left = cri.pods().await;
    drop(berthd);
    assert!(!not_ready.status && not_ready.message.contains("10-broken.conflist"), "{not_ready:?}");
    assert_eq!(ip, "", "no usable network: loopback only");
    assert!(refused[0].message().contains("no addresses left in the pool"), "{:?}", refused[0]);
    assert!(refused[1].message().contains("flooder") && refused[1].message().contains("1048576"), "{:?}", refused[1]);
    assert!(left.is_empty(), "no failed pod left: {left:?}");
    assert!(grew < 16 * 1024, "berthd grew {grew} KiB reading a 100 MB flood");
    env.leak_check();
}

/// Dual stack where the node's config gives an IPv6 range too: the pod's IPv4 address first (its
/// `ip`), the IPv6 one in `additional_ips`, and another pod reaches it over IPv6. No gateway and
/// no portmap: the host's forwarding and ip6tables stay as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_an_ipv6_address_too_where_the_config_gives_a_range() {
    let env = TestEnv::new("cri-ipv6");
    let registry = busybox_registry(&env);
    let pid = std::process::id();
    let (bridge, subnet, subnet6, ipam) =
        (format!("bsix{}", pid % 100_000), format!("10.231.{}.0/24", pid % 250), format!("fd00:b:{:x}::/64", pid % 65_000), env.dir.join("ipam"));
    let conflist = serde_json::json!({"cniVersion": "1.0.0", "name": "berth-ipv6-test", "plugins": [
        {"type": "bridge", "bridge": bridge, "isGateway": false, "ipMasq": false,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}], [{"subnet": subnet6}]], "dataDir": ipam}}]});
    let (host, berthd, mut cri, image) = berthd_on_a_pod_network(&env, &registry, &conflist).await;
    let (a_config, b_config) = (pod_config(&env, "six"), pod_config(&env, "client6"));
    let (a, b) = (cri.run_pod(&a_config).await, cri.run_pod(&b_config).await);
    let network = cri.runtime.pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: a.clone(), verbose: false }).await.unwrap();
    let network = network.into_inner().status.unwrap().network.unwrap();
    let v6: Vec<String> = network.additional_ips.iter().map(|ip| ip.ip.clone()).collect();
    let (_, client) = cri.server_and_client(&image, (&a, &a_config), (&b, &b_config), "hello over six").await;
    // (A new IPv6 address is tentative until duplicate detection is done, a second or two.)
    let fetched = cri.fetch(&client, &format!("http://[{}]:8080/", v6.first().map(String::as_str).unwrap_or("::1"))).await;
    for pod in [&a, &b] {
        cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
        cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    }
    drop(berthd);
    let leaks = host.leaks_then_restore(&bridge, &ipam, &[a.clone(), b.clone()]);
    assert!(network.ip.starts_with(subnet.trim_end_matches("0/24")), "the IPv4 address first: {}", network.ip);
    let prefix = subnet6.trim_end_matches("/64");
    assert!(v6.len() == 1 && v6[0].starts_with(prefix), "one IPv6 address from {subnet6}: {v6:?}");
    assert_eq!(fetched, "hello over six", "pod b to pod a over IPv6");
    assert!(leaks.is_empty(), "left behind:\n{}", leaks.join("\n"));
    env.leak_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cni_faults_leave_no_half_made_pod_and_berthd_answers_meanwhile() {
    const CNI_TIMEOUT: u64 = 10;
    let env = TestEnv::new("cri-cni-faults");
    let registry = busybox_registry(&env);
    let pid = std::process::id();
    let (bridge, subnet, ipam) = (format!("bflt{}", pid % 100_000), format!("10.233.{}.0/24", pid % 250), env.dir.join("ipam"));
    let (conf_dir, bin, marks) = (env.dir.join("net.d"), env.dir.join("cni-bin"), env.dir.join("marks"));
    for dir in [&conf_dir, &bin, &marks] {
        std::fs::create_dir_all(dir).unwrap();
    }
    // Debian's bridge behind a wrapper the test steers with files: `hang` (ADD never ends),
    // `slow-ADD` / `slow-DEL` (2 s first, announced by `started-*`); `done-*` once bridge finished.
    let m = marks.display();
    let wrapper = format!(
        "#!/bin/sh\nif [ -e {m}/hang ] && [ \"$CNI_COMMAND\" = ADD ]; then exec sleep 1000; fi\n\
         if [ -e {m}/slow-$CNI_COMMAND ]; then touch {m}/started-$CNI_COMMAND; sleep 2; fi\n\
         /usr/lib/cni/bridge\nrc=$?\ntouch {m}/done-$CNI_COMMAND\nexit $rc\n"
    );
    std::fs::write(bin.join("bridge"), wrapper).unwrap();
    std::fs::set_permissions(bin.join("bridge"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let conflist = serde_json::json!({"cniVersion": "1.0.0", "name": "berth-faults", "plugins": [
        {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": ipam}}]});
    std::fs::write(conf_dir.join("10-faults.conflist"), conflist.to_string()).unwrap();
    // The timeout must outlast an honest plugin call everywhere: the DEL that undoes the hung ADD
    // runs under it too, and under the cgroup v2 VM's emulation (TCG) bridge takes seconds.
    let extra = format!("cni_conf_dir = {conf_dir:?}\ncni_bin_dirs = [{bin:?}, \"/usr/lib/cni\"]\ncni_timeout = {CNI_TIMEOUT}\n");
    let host = berth_testsupport::HostNetwork::snapshot();
    let start = || Berthd::start_with(&env, &[&registry.address], &extra, None);
    let allocations = || berth_testsupport::ip_allocations(&ipam);

    // 1. A plugin that hangs: RunPodSandbox fails at the timeout (10 s) with the plugin named, berthd
    //    answers other calls meanwhile, and nothing of the pod is left.
    let mut berthd = start();
    let mut cri = connect(&berthd).await;
    std::fs::write(marks.join("hang"), "").unwrap();
    let mut other = connect(&berthd).await;
    let config = pod_config(&env, "hung");
    let attempt =
        tokio::spawn(
            async move { other.runtime.run_pod_sandbox(RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() }).await },
        );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // Answered while the ADD still hangs (not a wall-clock bound: the VM's emulation is slow).
    cri.pods().await;
    assert!(!attempt.is_finished(), "ListPodSandbox waited for the hung plugin");
    let err = attempt.await.unwrap().unwrap_err();
    assert!(err.message().contains("bridge") && err.message().contains("did not finish"), "{err:?}");
    assert!(cri.pods().await.is_empty() && allocations().is_empty(), "the failed pod is gone: {:?}", allocations());
    std::fs::remove_file(marks.join("hang")).unwrap();

    // 2. kill -9 of berthd during ADD (the plugin finishes on its own): after the restart the
    //    half-made pod is gone, its address released.
    // (Marks of earlier steps go first: a stale `done-*` would not wait for this step's plugin.)
    let _ = std::fs::remove_file(marks.join("done-ADD"));
    std::fs::write(marks.join("slow-ADD"), "").unwrap();
    let mut other = connect(&berthd).await;
    let config = pod_config(&env, "interrupted");
    let attempt =
        tokio::spawn(
            async move { other.runtime.run_pod_sandbox(RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() }).await },
        );
    berth_testsupport::wait_for_file(&marks.join("started-ADD"));
    berthd.child.kill().unwrap();
    berthd.child.wait().unwrap();
    assert!(attempt.await.unwrap().is_err());
    berth_testsupport::wait_for_file(&marks.join("done-ADD"));
    assert_eq!(allocations().len(), 1, "the orphaned ADD allocated an address");
    std::fs::remove_file(marks.join("slow-ADD")).unwrap();
    // Not dropped: a test Berthd's drop cleans up its pods' pins, which the restart must find.
    std::mem::forget(berthd);
    let mut berthd = start();
    let mut cri = connect(&berthd).await;
    assert!(cri.pods().await.is_empty(), "the pod berthd died creating was removed");
    assert!(allocations().is_empty(), "and its address released: {:?}", allocations());

    // 3. kill -9 during DEL (StopPodSandbox): after the restart, stop and remove finish the job.
    let pod = cri.run_pod(&pod_config(&env, "stopping")).await;
    assert_eq!(allocations().len(), 1);
    let _ = std::fs::remove_file(marks.join("done-DEL"));
    std::fs::write(marks.join("slow-DEL"), "").unwrap();
    let mut other = connect(&berthd).await;
    let id = pod.clone();
    let stopping = tokio::spawn(async move { other.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id }).await });
    berth_testsupport::wait_for_file(&marks.join("started-DEL"));
    berthd.child.kill().unwrap();
    berthd.child.wait().unwrap();
    let _ = stopping.await.unwrap();
    berth_testsupport::wait_for_file(&marks.join("done-DEL"));
    std::fs::remove_file(marks.join("slow-DEL")).unwrap();
    std::mem::forget(berthd);
    let berthd = start();
    let mut cri = connect(&berthd).await;
    cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    assert!(cri.pods().await.is_empty() && allocations().is_empty());

    // 4. A pod whose namespace pin went while berthd was down (what a reboot does): removing it
    //    still releases its address (DEL without a netns), and berthd starts.
    let gone = cri.run_pod(&pod_config(&env, "rebooted")).await;
    let mut berthd = berthd;
    berthd.child.kill().unwrap();
    berthd.child.wait().unwrap();
    let pin = berthd.state.join("containers").join(&gone).join("ns/net");
    assert!(std::process::Command::new("umount").arg(&pin).status().unwrap().success());
    std::mem::forget(berthd);
    let berthd = start();
    let mut cri = connect(&berthd).await;
    cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: gone.clone() }).await.unwrap();
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: gone.clone() }).await.unwrap();
    assert!(cri.pods().await.is_empty() && allocations().is_empty(), "{:?}", allocations());
    drop(berthd);
    let leaks = host.leaks_then_restore(&bridge, &ipam, &[pod, gone]);
    assert!(leaks.is_empty(), "left behind:\n{}", leaks.join("\n"));
    env.leak_check();
}

// --- Streaming: raw clients of berth's streaming server (the SPDY codec is berth-streaming's; the
// HTTP around it is written out here), for what crictl and critest cannot do: count what 1,000
// sessions leave, and be hostile.

mod raw {
    use berth_streaming::spdy::frame::{self, Frame};
    use berth_streaming::spdy::headers::{Decoder, Encoder};
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub trait Conn: Read + Write + Send {}
    impl<T: Read + Write + Send> Conn for T {}

    /// A request on `url` (http://host:port/path) with `headers`; the status code and the socket.
    pub fn request(url: &str, method: &str, headers: &[(&str, &str)]) -> (u16, Box<dyn Conn>, Vec<u8>) {
        request_via(url, None, method, headers)
    }

    /// The same, https:// URLs trusting the certificate at `ca`.
    pub fn request_via(url: &str, ca: Option<&std::path::Path>, method: &str, headers: &[(&str, &str)]) -> (u16, Box<dyn Conn>, Vec<u8>) {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (host, path) = rest.split_at(rest.find('/').expect("a path"));
        let tcp = TcpStream::connect(host).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut tcp: Box<dyn Conn> = match scheme {
            "http" => Box::new(tcp),
            "https" => {
                use rustls::pki_types::pem::PemObject;
                let mut roots = rustls::RootCertStore::empty();
                roots.add(rustls::pki_types::CertificateDer::from_pem_file(ca.expect("a CA for https")).unwrap()).unwrap();
                let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let name = rustls::pki_types::ServerName::try_from(host.rsplit_once(':').unwrap().0.to_string()).unwrap();
                let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
                Box::new(rustls::StreamOwned::new(conn, tcp))
            }
            other => panic!("scheme {other}"),
        };
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        for (name, value) in headers {
            head += &format!("{name}: {value}\r\n");
        }
        tcp.write_all(format!("{head}\r\n").as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut chunk).unwrap();
            assert!(n > 0, "closed before the response head: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
        let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let status = String::from_utf8_lossy(&got[9..12]).parse().unwrap();
        (status, tcp, got[end..].to_vec())
    }

    pub struct Spdy {
        pub tcp: Box<dyn Conn>,
        enc: Encoder,
        dec: Decoder,
        buf: Vec<u8>,
    }

    impl Spdy {
        pub fn upgrade(url: &str, protocol: &str) -> Spdy {
            Spdy::upgrade_via(url, None, protocol)
        }

        pub fn upgrade_via(url: &str, ca: Option<&std::path::Path>, protocol: &str) -> Spdy {
            let headers = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"), ("X-Stream-Protocol-Version", protocol)];
            let (status, tcp, buf) = request_via(url, ca, "POST", &headers);
            assert_eq!(status, 101, "upgrade of {url}");
            Spdy { tcp, enc: Encoder::default(), dec: Decoder::default(), buf }
        }

        pub fn send(&mut self, frame: Frame) {
            let mut out = Vec::new();
            frame::encode(&frame, &mut out);
            let _ = self.tcp.write_all(&out);
        }

        pub fn open(&mut self, id: u32, headers: &[(&str, &str)]) {
            let header_block = self.enc.encode(headers);
            self.send(Frame::SynStream { stream_id: id, associated_to: 0, priority: 0, fin: false, unidirectional: false, header_block });
        }

        /// The next frame; None at the end of the connection.
        pub fn next(&mut self) -> Option<Frame> {
            loop {
                if let Some((frame, used)) = frame::decode(&self.buf).unwrap() {
                    self.buf.drain(..used);
                    if let Frame::SynReply { header_block, .. } = &frame {
                        self.dec.decode(header_block).unwrap();
                    }
                    return Some(frame);
                }
                let mut chunk = [0u8; 65536];
                match self.tcp.read(&mut chunk) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        }

        /// Reads until `wanted` streams have ended (FIN); what each carried, by stream id.
        pub fn read_streams(&mut self, wanted: &[u32]) -> std::collections::HashMap<u32, Vec<u8>> {
            let mut got: std::collections::HashMap<u32, Vec<u8>> = Default::default();
            let mut ended = Vec::new();
            while !wanted.iter().all(|w| ended.contains(w)) {
                match self.next() {
                    Some(Frame::Data { stream_id, fin, data }) => {
                        got.entry(stream_id).or_default().extend_from_slice(&data);
                        if fin {
                            ended.push(stream_id);
                        }
                    }
                    Some(_) => {}
                    None => panic!("the connection ended before streams {wanted:?} did; got {got:?}"),
                }
            }
            got
        }
    }

    /// One exec session over SPDY v4: the command's stdout and the status JSON.
    pub fn exec(url: &str) -> (String, serde_json::Value) {
        exec_via(url, None)
    }

    pub fn exec_via(url: &str, ca: Option<&std::path::Path>) -> (String, serde_json::Value) {
        let mut spdy = Spdy::upgrade_via(url, ca, "v4.channel.k8s.io");
        spdy.open(1, &[("streamtype", "error")]);
        spdy.open(3, &[("streamtype", "stdout")]);
        let got = spdy.read_streams(&[1, 3]);
        let stdout = String::from_utf8_lossy(got.get(&3).map(Vec::as_slice).unwrap_or_default()).into_owned();
        let status = serde_json::from_slice(got.get(&1).map(Vec::as_slice).unwrap_or(b"null")).unwrap();
        (stdout, status)
    }
}

/// Open fds of a process, and its children's pids.
fn fds_and_children(pid: u32) -> (usize, Vec<u32>) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    (fds, children.split_whitespace().filter_map(|p| p.parse().ok()).collect())
}

impl Cri {
    async fn exec_url(&mut self, id: &str, cmd: &[&str]) -> String {
        let request = ExecRequest { container_id: id.into(), cmd: cmd.iter().map(|s| s.to_string()).collect(), stdout: true, ..Default::default() };
        self.runtime.exec(request).await.expect("exec URL").into_inner().url
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_exec_sessions_leave_no_process_or_fd_behind() {
    let (env, _registry, berthd, mut cri, image) = setup("cri-exec-leaks").await;
    cri.pull(&image).await;
    let pod_config = pod_config(&env, "execs");
    let pod = cri.run_pod(&pod_config).await;
    let container = cri.create(&pod, &pod_config, container_config(&image, "app", &["sleep", "300"])).await.unwrap();
    cri.start(&container).await;
    let shim_pid: u32 =
        std::fs::read_to_string(berthd.state.join("containers").join(&pod).join("shim").join("shim.pid")).unwrap().trim().parse().unwrap();
    let berthd_pid = berthd.child.id();
    // Warm up (berthd's pools, the shim's buffers), then count.
    for _ in 0..3 {
        let url = cri.exec_url(&container, &["true"]).await;
        tokio::task::spawn_blocking(move || raw::exec(&url)).await.unwrap();
    }
    let before = (fds_and_children(berthd_pid).0, fds_and_children(shim_pid));

    // 1,000 sessions, four at a time, each checked; every tenth client vanishes mid-exec instead.
    let mut urls = Vec::new();
    for i in 0..1000 {
        let cmd: Vec<String> = if i % 10 == 9 { vec!["sleep".into(), "0.3".into()] } else { vec!["echo".into(), format!("session-{i}")] };
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        urls.push((i, cri.exec_url(&container, &cmd).await));
        if urls.len() == 4 || i == 999 {
            let batch = std::mem::take(&mut urls);
            tokio::task::spawn_blocking(move || {
                std::thread::scope(|s| {
                    for (i, url) in &batch {
                        s.spawn(move || {
                            if i % 10 == 9 {
                                let mut spdy = raw::Spdy::upgrade(url, "v4.channel.k8s.io");
                                spdy.open(1, &[("streamtype", "error")]);
                                spdy.open(3, &[("streamtype", "stdout")]);
                                drop(spdy);
                                return;
                            }
                            let (stdout, status) = raw::exec(url);
                            assert_eq!(
                                (stdout.as_str(), &status["status"]),
                                (format!("session-{i}\n").as_str(), &serde_json::json!("Success")),
                                "{status}"
                            );
                        });
                    }
                })
            })
            .await
            .unwrap();
        }
    }
    // The vanished clients' sleeps end on their own (as Kubernetes leaves a non-tty exec to run).
    // A connection of the warm-up may still have been closing when counted (in berthd or in the
    // shim): fds may be fewer after, never more; the shim's children the same.
    let settled = |after: &(usize, (usize, Vec<u32>))| after.0 <= before.0 && after.1 .0 <= before.1 .0 && after.1 .1 == before.1 .1;
    let mut after = (0, (0, Vec::new()));
    for _ in 0..100 {
        after = (fds_and_children(berthd_pid).0, fds_and_children(shim_pid));
        if settled(&after) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(settled(&after), "(berthd's fds, (the shim's fds, its children)): {before:?} before 1,000 exec sessions, {after:?} after");

    cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod }).await.unwrap();
    drop(berthd);
    env.leak_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_streaming_clients_get_errors_and_port_forward_reaches_the_pod() {
    use berth_streaming::spdy::frame::Frame;
    let (env, _registry, berthd, mut cri, image) = setup("cri-stream-bad").await;
    cri.pull(&image).await;
    let pod_config = pod_config(&env, "streams");
    let pod = cri.run_pod(&pod_config).await;
    // A server on the pod's own loopback (the pod has no other network here).
    let web = ["sh", "-c", "echo served-in-the-pod > /tmp/index.html; exec httpd -f -p 127.0.0.1:8080 -h /tmp"];
    let container = cri.create(&pod, &pod_config, container_config(&image, "web", &web)).await.unwrap();
    cri.start(&container).await;

    // Tokens: unknown, reused, or used for another kind: 404, as is any other path.
    let url = cri.exec_url(&container, &["echo", "once"]).await;
    let (base, token) = url.rsplit_once('/').unwrap();
    let base = base.trim_end_matches("/exec");
    assert_eq!(raw::request(&format!("{base}/attach/{token}"), "POST", &[]).0, 404, "an exec token on /attach");
    assert_eq!(raw::request(&format!("{base}/exec/made-up"), "POST", &[]).0, 404);
    assert_eq!(raw::request(&format!("{base}/nothing"), "GET", &[]).0, 404);
    let url = cri.exec_url(&container, &["echo", "once"]).await;
    assert_eq!(raw::request(&url, "POST", &[]).0, 400, "no upgrade asked");
    assert_eq!(raw::request(&url, "POST", &[]).0, 404, "the token was used");
    let url = cri.exec_url(&container, &["echo", "once"]).await;
    let ws = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Protocol", "v9.channel.k8s.io"),
    ];
    assert_eq!(raw::request(&url, "GET", &ws).0, 400, "no subprotocol spoken here");
    let url = cri.exec_url(&container, &["echo", "once"]).await;
    let spdy = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"), ("X-Stream-Protocol-Version", "v9.channel.k8s.io")];
    assert_eq!(raw::request(&url, "POST", &spdy).0, 403, "no stream protocol spoken here");
    // A request no client could use.
    let both = ExecRequest { container_id: container.clone(), cmd: vec!["true".into()], tty: true, stderr: true, ..Default::default() };
    assert_eq!(cri.runtime.exec(both).await.unwrap_err().code(), Code::InvalidArgument);

    // After the upgrade: garbage, a version-2 frame, a zlib bomb in a header block, a 16 MiB
    // frame header: each ends its connection, nothing else.
    let bomb = {
        let mut enc = berth_streaming::spdy::headers::Encoder::default();
        enc.encode(&[("streamtype", &"x".repeat(1 << 20))])
    };
    let attacks: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0x80, 2, 0, 1, 0, 0, 0, 10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
        {
            let mut out = Vec::new();
            berth_streaming::spdy::frame::encode(
                &Frame::SynStream { stream_id: 1, associated_to: 0, priority: 0, fin: false, unidirectional: false, header_block: bomb },
                &mut out,
            );
            out
        },
        vec![0, 0, 0, 1, 0, 0xff, 0xff, 0xff],
    ];
    for attack in attacks {
        let url = cri.exec_url(&container, &["echo", "once"]).await;
        tokio::task::spawn_blocking(move || {
            let mut spdy = raw::Spdy::upgrade(&url, "v4.channel.k8s.io");
            std::io::Write::write_all(&mut spdy.tcp, &attack).unwrap();
            while let Some(frame) = spdy.next() {
                assert!(matches!(frame, Frame::GoAway { .. } | Frame::RstStream { .. }), "{frame:?}");
            }
        })
        .await
        .unwrap();
    }
    // A client that stops reading an endless output: berthd reads no more than the client takes.
    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap()
    };
    let before = rss(berthd.child.id());
    let url = cri.exec_url(&container, &["cat", "/dev/zero"]).await;
    let stalled = tokio::task::spawn_blocking(move || {
        let mut spdy = raw::Spdy::upgrade(&url, "v4.channel.k8s.io");
        spdy.open(1, &[("streamtype", "error")]);
        spdy.open(3, &[("streamtype", "stdout")]);
        std::thread::sleep(std::time::Duration::from_secs(3));
        spdy
    })
    .await
    .unwrap();
    let grown = rss(berthd.child.id()).saturating_sub(before);
    assert!(grown < 16 << 10, "berthd grew by {grown} KiB behind a client that reads nothing");
    drop(stalled);

    let url = cri.exec_url(&container, &["echo", "still-serving"]).await;
    let (stdout, status) = tokio::task::spawn_blocking(move || raw::exec(&url)).await.unwrap();
    assert_eq!((stdout.as_str(), status["status"].as_str()), ("still-serving\n", Some("Success")));

    // Port-forward over SPDY: a pair to the pod's 8080 gets the page; a pair to a closed port
    // gets the error on its error stream.
    let forward = |port: &'static str| {
        let request = PortForwardRequest { pod_sandbox_id: pod.clone(), port: vec![] };
        let mut runtime = cri.runtime.clone();
        async move {
            let url = runtime.port_forward(request).await.unwrap().into_inner().url;
            tokio::task::spawn_blocking(move || {
                let mut spdy = raw::Spdy::upgrade(&url, "portforward.k8s.io");
                spdy.open(1, &[("streamtype", "error"), ("port", port), ("requestid", "0")]);
                spdy.open(3, &[("streamtype", "data"), ("port", port), ("requestid", "0")]);
                spdy.send(Frame::Data { stream_id: 3, fin: true, data: b"GET /index.html HTTP/1.0\r\n\r\n".to_vec() });
                spdy.read_streams(&[1, 3])
            })
            .await
            .unwrap()
        }
    };
    let got = forward("8080").await;
    assert!(String::from_utf8_lossy(&got[&3]).contains("served-in-the-pod"), "{got:?}");
    assert!(got.get(&1).is_none_or(Vec::is_empty), "{got:?}");
    let got = forward("8081").await;
    let error = String::from_utf8_lossy(got.get(&1).map(Vec::as_slice).unwrap_or_default()).into_owned();
    assert!(error.contains("error forwarding port 8081"), "{error:?}");

    cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod }).await.unwrap();
    drop(berthd);
    env.leak_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streaming_server_speaks_https_when_given_a_certificate() {
    let env = TestEnv::new("cri-stream-tls");
    let registry = busybox_registry(&env);
    let (cert, key) = (env.dir.join("stream.crt"), env.dir.join("stream.key"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
    let config = format!("streaming_tls_cert = {cert:?}\nstreaming_tls_key = {key:?}\n");
    let berthd = Berthd::start_with(&env, &[&registry.address], &config, None);
    let mut cri = connect(&berthd).await;
    let image = format!("{}/test/busybox:v1", registry.address);
    cri.pull(&image).await;
    let pod_config = pod_config(&env, "tls");
    let pod = cri.run_pod(&pod_config).await;
    let container = cri.create(&pod, &pod_config, container_config(&image, "app", &["sleep", "300"])).await.unwrap();
    cri.start(&container).await;

    let url = cri.exec_url(&container, &["echo", "over-tls"]).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = cert.clone();
    let (stdout, status) = tokio::task::spawn_blocking(move || raw::exec_via(&url, Some(&ca))).await.unwrap();
    assert_eq!((stdout.as_str(), status["status"].as_str()), ("over-tls\n", Some("Success")));
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let url = cri.exec_url(&container, &["true"]).await.replacen("https://", "", 1);
    let plain = tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(url.split('/').next().unwrap()).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(15))).unwrap();
        std::io::Write::write_all(&mut tcp, b"POST /exec/x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let _ = std::io::Read::read_to_end(&mut tcp, &mut got);
        got
    })
    .await
    .unwrap();
    assert!(!plain.starts_with(b"HTTP/1.1"), "{:?}", String::from_utf8_lossy(&plain));

    cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod }).await.unwrap();
    drop(berthd);
    env.leak_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_of_every_protocol_exec_and_port_forward() {
    use tungstenite::Message;
    let (env, _registry, berthd, mut cri, image) = setup("cri-stream-ws").await;
    cri.pull(&image).await;
    let pod_config = pod_config(&env, "ws");
    let pod = cri.run_pod(&pod_config).await;
    let web = ["sh", "-c", "echo served-over-channels > /tmp/index.html; exec httpd -f -p 127.0.0.1:8080 -h /tmp"];
    let container = cri.create(&pod, &pod_config, container_config(&image, "web", &web)).await.unwrap();
    cri.start(&container).await;

    // One client: connects to `url` offering `protocol`, sends `messages`, and returns every
    // message until the server closes.
    fn session(url: String, protocol: &str, messages: Vec<Message>) -> (String, Vec<Message>) {
        let ws_url = url.replacen("http://", "ws://", 1);
        let mut request = tungstenite::client::IntoClientRequest::into_client_request(ws_url.as_str()).unwrap();
        request.headers_mut().insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
        let host = url.trim_start_matches("http://").split('/').next().unwrap().to_string();
        let tcp = std::net::TcpStream::connect(host).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
        let (mut ws, response) = tungstenite::client::client(request, tcp).unwrap();
        let chosen = response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        for m in messages {
            ws.send(m).unwrap();
        }
        let mut got = Vec::new();
        while let Ok(m) = ws.read() {
            if m.is_close() {
                break;
            }
            got.push(m);
        }
        (chosen, got)
    }
    fn channel(got: &[Message], id: u8) -> Vec<u8> {
        got.iter()
            .filter_map(|m| if let Message::Binary(b) = m { (b.first() == Some(&id)).then(|| b[1..].to_vec()) } else { None })
            .flatten()
            .collect()
    }

    // v5 (what crictl and kubectl offer): stdin, then the close signal for channel 0; the status
    // is JSON on channel 3.
    let request = ExecRequest {
        container_id: container.clone(),
        cmd: vec!["tr".into(), "a-z".into(), "A-Z".into()],
        stdin: true,
        stdout: true,
        ..Default::default()
    };
    let url = cri.runtime.exec(request.clone()).await.unwrap().into_inner().url;
    let input = vec![Message::binary(b"\x00typed over v5\n".to_vec()), Message::binary(vec![255, 0])];
    let (chosen, got) = tokio::task::spawn_blocking(move || session(url, "v5.channel.k8s.io", input)).await.unwrap();
    assert_eq!(chosen, "v5.channel.k8s.io");
    assert_eq!(String::from_utf8_lossy(&channel(&got, 1)), "TYPED OVER V5\n");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&channel(&got, 3)).unwrap()["status"], "Success");

    // base64 (browsers' form): text messages, an ASCII channel digit.
    let request = ExecRequest {
        container_id: container.clone(),
        cmd: vec!["sh".into(), "-c".into(), "echo b64; exit 4".into()],
        stdout: true,
        ..Default::default()
    };
    let url = cri.runtime.exec(request).await.unwrap().into_inner().url;
    let (chosen, got) = tokio::task::spawn_blocking(move || session(url, "v4.base64.channel.k8s.io", vec![])).await.unwrap();
    assert_eq!(chosen, "v4.base64.channel.k8s.io");
    let text: Vec<String> = got.iter().filter_map(|m| if let Message::Text(t) = m { Some(t.to_string()) } else { None }).collect();
    assert!(text.contains(&format!("1{}", "YjY0Cg==")), "{text:?}");
    let status = text.iter().find_map(|t| t.strip_prefix('3')).filter(|t| !t.is_empty()).expect("a status on channel 3");
    use base64::Engine;
    let status: serde_json::Value = serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(status).unwrap()).unwrap();
    assert_eq!((status["reason"].as_str(), status["details"]["causes"][0]["message"].as_str()), (Some("NonZeroExitCode"), Some("4")));

    // Port-forward in the channel form: the URL names the port; channel 0 is its data, 1 its
    // errors, both opening with the port (u16 little-endian).
    let url = cri.runtime.port_forward(PortForwardRequest { pod_sandbox_id: pod.clone(), port: vec![] }).await.unwrap().into_inner().url;
    let input = vec![Message::binary(b"\x00GET /index.html HTTP/1.0\r\n\r\n".to_vec())];
    let (chosen, got) = tokio::task::spawn_blocking(move || session(format!("{url}?port=8080"), "v4.channel.k8s.io", input)).await.unwrap();
    assert_eq!(chosen, "v4.channel.k8s.io");
    let data = channel(&got, 0);
    assert_eq!(&data[..2], &8080u16.to_le_bytes());
    assert!(String::from_utf8_lossy(&data).contains("served-over-channels"), "{:?}", String::from_utf8_lossy(&data));
    assert_eq!(channel(&got, 1), 8080u16.to_le_bytes(), "no error, only the port");

    cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod }).await.unwrap();
    drop(berthd);
    env.leak_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursive_read_only_mounts_reach_the_mounts_below() {
    let (env, _registry, berthd, mut cri, image) = setup("cri-rro").await;
    let status = cri.runtime.status(StatusRequest { verbose: false }).await.unwrap().into_inner();
    let default = status.runtime_handlers.iter().find(|h| h.name.is_empty()).unwrap();
    assert!(default.features.unwrap().recursive_read_only_mounts, "berth-oci, the default, makes them");
    cri.pull(&image).await;
    let source = env.dir.join("rro-src");
    std::fs::create_dir_all(source.join("sub")).unwrap();
    assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(source.join("sub")).status().unwrap().success());
    let pod_config = pod_config(&env, "rro");
    let pod = cri.run_pod(&pod_config).await;
    let mount = |recursive_read_only, readonly| Mount {
        container_path: "/mnt".into(),
        host_path: source.display().to_string(),
        readonly,
        recursive_read_only,
        propagation: MountPropagation::PropagationPrivate as i32,
        ..Default::default()
    };
    let mut config = container_config(&image, "app", &["sleep", "300"]);
    config.mounts = vec![mount(true, false)];
    let refused = cri.create(&pod, &pod_config, config.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "recursive read-only needs read-only: {refused:?}");
    config.mounts = vec![mount(true, true)];
    let container = cri.create(&pod, &pod_config, config).await.unwrap();
    cri.start(&container).await;
    let probe = cri.exec(&container, &["sh", "-c", "touch /mnt/sub/below 2>/dev/null && echo writable; echo done"]).await;
    assert_eq!(text(&probe.stdout), "done", "the mount below /mnt is read-only too");
    cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod }).await.unwrap();
    let _ = std::process::Command::new("umount").arg(source.join("sub")).status();
    drop(berthd);
    env.leak_check();
}

/// `hostUsers: false`: a pod in a user namespace of its own (with a shared PID namespace, so
/// berth's infra is in it too). Its root is root only inside: the image's files, its /etc files
/// and an idmapped volume are its own, what it writes belongs to its host uid, and the host's
/// root is nobody there. The modes and mappings Kubernetes never sends are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_in_a_user_namespace_is_root_only_inside() {
    let (env, _registry, berthd, mut cri, image) = setup("cri-userns").await;
    let status = cri.runtime.status(StatusRequest { verbose: false }).await.unwrap().into_inner();
    let default = status.runtime_handlers.iter().find(|h| h.name.is_empty()).unwrap();
    // Where berthd's layers are decides (ext4 takes idmapped mounts; tmpfs only from Linux 6.3,
    // and the VM's test root is a tmpfs under Debian 12's 6.1).
    let supported = berth_containers::user_namespace::idmap_supported(&env.dir);
    assert_eq!(default.features.unwrap().user_namespaces, supported, "the handler says what the layers' filesystem allows");
    cri.pull(&image).await;
    let range = IdMapping { container_id: 0, host_id: 200_000, length: 65536 };
    let userns = |mode: NamespaceMode, ids: Vec<IdMapping>| NamespaceOption {
        pid: NamespaceMode::Pod as i32,
        userns_options: Some(UserNamespace { mode: mode as i32, uids: ids.clone(), gids: ids }),
        ..Default::default()
    };
    let plain_pod_config = pod_config(&env, "plain");
    let mut pod_config = pod_config(&env, "userns");
    pod_config.linux.get_or_insert_with(Default::default).security_context =
        Some(LinuxSandboxSecurityContext { namespace_options: Some(userns(NamespaceMode::Pod, vec![range])), ..Default::default() });

    // What Kubernetes never sends: refused before anything is made.
    let wrong = [
        userns(NamespaceMode::Pod, vec![range, IdMapping { container_id: 0, host_id: 300_000, length: 65536 }]),
        userns(NamespaceMode::Pod, vec![IdMapping { container_id: 1, ..range }]),
        userns(NamespaceMode::Pod, vec![IdMapping { host_id: 0, ..range }]),
        userns(NamespaceMode::Container, vec![]),
        userns(NamespaceMode::Target, vec![]),
    ];
    for options in wrong {
        let mut config = pod_config.clone();
        config.linux.as_mut().unwrap().security_context.as_mut().unwrap().namespace_options = Some(options.clone());
        let refused = cri.runtime.run_pod_sandbox(RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() }).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{options:?}: {refused:?}");
    }
    assert!(cri.pods().await.is_empty());
    if !supported {
        let refused =
            cri.runtime.run_pod_sandbox(RunPodSandboxRequest { config: Some(pod_config), runtime_handler: String::new() }).await.unwrap_err();
        assert!(refused.code() == Code::InvalidArgument && refused.message().contains("user namespace"), "{refused:?}");
        eprintln!("NOTE: no idmapped mounts under {}: a pod in a user namespace is refused, as checked", env.dir.display());
        drop(berthd);
        env.leak_check();
        return;
    }

    let volume = env.dir.join("userns-volume");
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::write(volume.join("from-host"), "hi").unwrap();
    let mount = Mount {
        container_path: "/vol".into(),
        host_path: volume.display().to_string(),
        uid_mappings: vec![range],
        gid_mappings: vec![range],
        ..Default::default()
    };
    // An idmapped volume only where there is a user namespace to map to.
    let plain = cri.run_pod(&plain_pod_config).await;
    let mut idmapped = container_config(&image, "idmapped", &["true"]);
    idmapped.mounts = vec![mount.clone()];
    assert_eq!(cri.create(&plain, &plain_pod_config, idmapped).await.unwrap_err().code(), Code::InvalidArgument);
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: plain }).await.unwrap();

    let pod = cri.run_pod(&pod_config).await;
    // Only with the pod's own mapping.
    let other = IdMapping { host_id: 300_000, ..range };
    let mut elsewhere = container_config(&image, "elsewhere", &["true"]);
    elsewhere.mounts = vec![Mount { uid_mappings: vec![other], gid_mappings: vec![other], ..mount.clone() }];
    assert_eq!(cri.create(&pod, &pod_config, elsewhere).await.unwrap_err().code(), Code::InvalidArgument);
    let mut config = container_config(&image, "app", &["sleep", "300"]);
    config.mounts = vec![mount];
    config.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            namespace_options: Some(userns(NamespaceMode::Pod, vec![range])),
            ..Default::default()
        }),
        ..Default::default()
    });
    let container = cri.create(&pod, &pod_config, config).await.unwrap();
    cri.start(&container).await;
    let uid_map = text(&cri.exec(&container, &["cat", "/proc/self/uid_map"]).await.stdout);
    assert_eq!(uid_map.split_whitespace().collect::<Vec<_>>(), ["0", "200000", "65536"]);
    let owners = cri.exec(&container, &["stat", "-c", "%u:%g %n", "/", "/bin/busybox", "/etc/hosts", "/vol/from-host"]).await;
    assert_eq!(text(&owners.stdout), "0:0 /\n0:0 /bin/busybox\n0:0 /etc/hosts\n0:0 /vol/from-host", "{}", text(&owners.stderr));
    let init = text(&cri.exec(&container, &["cat", "/proc/1/cmdline"]).await.stdout);
    assert!(init.contains("--infra"), "berth's infra shares the pod's PID namespace: {init:?}");
    let wrote = cri.exec(&container, &["sh", "-c", "echo x > /made && echo y > /vol/made && mkdir /tmp/d && id -u"]).await;
    assert_eq!((wrote.exit_code, text(&wrote.stdout)), (0, "0".to_string()), "{}", text(&wrote.stderr));
    use std::os::unix::fs::MetadataExt;
    let owner = |path: &std::path::Path| std::fs::metadata(path).map(|m| (m.uid(), m.gid())).unwrap();
    assert_eq!(owner(&volume.join("made")), (0, 0), "the idmapped volume maps the pod's root back to the host's");
    // The writable layer holds what the pod's root made, as 200000 on the host.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let rootfs = mountinfo.lines().find(|l| l.split_whitespace().nth(4).is_some_and(|m| m.ends_with(&format!("{container}/rootfs")))).unwrap();
    let upper = rootfs.split(',').find_map(|o| o.strip_prefix("upperdir=")).unwrap();
    assert_eq!(owner(&std::path::Path::new(upper).join("made")), (200_000, 200_000), "the pod's root is 200000 on the host");
    let infra_pid = std::fs::read_to_string(berthd.state.join("containers").join(&pod).join("infra.pid")).unwrap();
    let infra_ids = (
        berth_testsupport::proc_status(infra_pid.trim().parse().unwrap(), "Uid:"),
        berth_testsupport::proc_status(infra_pid.trim().parse().unwrap(), "Gid:"),
    );
    assert_eq!(infra_ids, (200_000 + 65534, 200_000 + 65534), "berth's infra is the pod's nobody");
    // The host's root is nobody in there: a file only it may read stays closed.
    std::fs::write(volume.join("secret"), "s").unwrap();
    std::os::unix::fs::chown(volume.join("secret"), Some(300_000), Some(300_000)).unwrap();
    std::fs::set_permissions(volume.join("secret"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let secret = cri.exec(&container, &["cat", "/vol/secret"]).await;
    assert_ne!(secret.exit_code, 0, "a host uid outside the pod's range is out of its reach");

    cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod }).await.unwrap();
    drop(berthd);
    env.leak_check();
}

/// UpdateContainerResources carries no device rules: a privileged container keeps every device
/// through it, and a container given one device keeps that one (/dev/kmsg, opened for writing,
/// stands for any device the defaults lack). The new CPU weight reaches the cgroup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updated_resources_leave_a_containers_devices_as_they_are() {
    let (env, _registry, berthd, mut cri, image) = setup("cri-update").await;
    cri.pull(&image).await;
    let mut pod_config = pod_config(&env, "update");
    pod_config.linux.get_or_insert_with(Default::default).security_context =
        Some(LinuxSandboxSecurityContext { privileged: true, ..Default::default() });
    let pod = cri.run_pod(&pod_config).await;
    let mut privileged = container_config(&image, "privileged", &["sleep", "300"]);
    privileged.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext { privileged: true, ..Default::default() }),
        ..Default::default()
    });
    let mut given = container_config(&image, "given", &["sleep", "300"]);
    given.devices = vec![Device { container_path: "/dev/kmsg".into(), host_path: "/dev/kmsg".into(), permissions: "rw".into() }];
    // `true`, not `:`: a failed redirection of a special built-in ends the shell.
    let opens = ["sh", "-c", "if [ -c /dev/kmsg ] && true >> /dev/kmsg; then echo opened; else echo denied; fi 2>/dev/null"];
    let weight = ["sh", "-c", "cat /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || cat /sys/fs/cgroup/cpu.weight"];
    // runc's conversion of 256 shares to a v2 weight.
    let expected_weight = if berth_testsupport::cgroup_v2() { "10" } else { "256" };
    for config in [privileged, given] {
        let name = config.metadata.as_ref().unwrap().name.clone();
        let id = cri.create(&pod, &pod_config, config).await.unwrap();
        cri.start(&id).await;
        assert_eq!(text(&cri.exec(&id, &opens).await.stdout), "opened", "{name}");
        let linux = LinuxContainerResources { cpu_shares: 256, ..Default::default() };
        let request = UpdateContainerResourcesRequest { container_id: id.clone(), linux: Some(linux), ..Default::default() };
        cri.runtime.update_container_resources(request).await.unwrap();
        assert_eq!(text(&cri.exec(&id, &weight).await.stdout), expected_weight, "{name}");
        assert_eq!(text(&cri.exec(&id, &opens).await.stdout), "opened", "{name}, after an update");
    }
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod }).await.unwrap();
    drop(berthd);
    env.leak_check();
}
