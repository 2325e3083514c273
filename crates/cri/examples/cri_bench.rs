//! A CRI client for bench/pods.py: times calls inside one process (so no client start-up is
//! counted), against any CRI socket (berthd's, containerd's). Prints one JSON object.
//!
//! `cri_bench start SOCKET IMAGE COUNT`: COUNT pods one after another, each RunPodSandbox (host
//! network, unless `CRI_BENCH_POD_NETWORK=1`: then the pod's own, from the runtime's CNI config),
//! then CreateContainer (`sleep 3600`) + StartContainer; the milliseconds each pod took.
//! `cri_bench parallel SOCKET IMAGE COUNT`: the same COUNT pods all at once; each one's time and
//! the wall time. `cri_bench list SOCKET TIMES`: ListPodSandbox and ListContainers
//! TIMES times each; milliseconds per call. `cri_bench teardown SOCKET`: StopPodSandbox and
//! RemovePodSandbox of every pod; milliseconds in all.

use berth_cri::proto::runtime_service_client::RuntimeServiceClient;
use berth_cri::proto::*;
use std::time::Instant;

type Client = RuntimeServiceClient<tonic::transport::Channel>;

fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

async fn start(client: &mut Client, image: &str, count: usize, run: &str) -> Vec<f64> {
    let mut times = Vec::new();
    for i in 0..count {
        times.push(one_pod(client, image, &format!("bench-{run}-{i}")).await);
    }
    times
}

/// RunPodSandbox + CreateContainer + StartContainer: milliseconds.
async fn one_pod(client: &mut Client, image: &str, name: &str) -> f64 {
    let network = if std::env::var_os("CRI_BENCH_POD_NETWORK").is_some_and(|v| v == "1") { NamespaceMode::Pod } else { NamespaceMode::Node };
    let name = name.to_string();
    let pod = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata { name: name.clone(), namespace: "bench".into(), uid: name.clone(), attempt: 0 }),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption { network: network as i32, pid: NamespaceMode::Container as i32, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let container = ContainerConfig {
        metadata: Some(ContainerMetadata { name: "sleep".into(), attempt: 0 }),
        image: Some(ImageSpec { image: image.into(), ..Default::default() }),
        command: vec!["sleep".into(), "3600".into()],
        ..Default::default()
    };
    let started = Instant::now();
    let id = client.run_pod_sandbox(RunPodSandboxRequest { config: Some(pod.clone()), runtime_handler: String::new() }).await.expect("run pod");
    let pod_id = id.into_inner().pod_sandbox_id;
    let request = CreateContainerRequest { pod_sandbox_id: pod_id, config: Some(container), sandbox_config: Some(pod) };
    let container_id = client.create_container(request).await.expect("create container").into_inner().container_id;
    client.start_container(StartContainerRequest { container_id }).await.expect("start container");
    millis(started)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: cri_bench start SOCKET IMAGE COUNT [RUN] | parallel SOCKET IMAGE COUNT | list SOCKET TIMES | teardown SOCKET";
    let socket = std::path::PathBuf::from(args.get(2).expect(usage));
    let mut client = RuntimeServiceClient::new(berth_api::connect(&socket).await.expect("connect"));
    let result = match args[1].as_str() {
        "start" => {
            let count = args[4].parse().expect(usage);
            let run = args.get(5).map(String::as_str).unwrap_or("0");
            serde_json::json!({"pod_start_ms": start(&mut client, &args[3], count, run).await})
        }
        "parallel" => {
            let count: usize = args[4].parse().expect(usage);
            let started = Instant::now();
            let mut pods = tokio::task::JoinSet::new();
            for i in 0..count {
                let (mut client, image) = (client.clone(), args[3].clone());
                pods.spawn(async move { one_pod(&mut client, &image, &format!("bench-parallel-{i}")).await });
            }
            let times: Vec<f64> = pods.join_all().await;
            serde_json::json!({"pod_start_ms": times, "wall_ms": millis(started)})
        }
        "list" => {
            let times: usize = args[3].parse().expect(usage);
            let (mut pods, mut containers) = (Vec::new(), Vec::new());
            for _ in 0..times {
                let started = Instant::now();
                client.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await.expect("list pods");
                pods.push(millis(started));
                let started = Instant::now();
                client.list_containers(ListContainersRequest { filter: None }).await.expect("list containers");
                containers.push(millis(started));
            }
            serde_json::json!({"list_pods_ms": pods, "list_containers_ms": containers})
        }
        "teardown" => {
            let started = Instant::now();
            let pods = client.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await.expect("list pods").into_inner().items;
            for pod in &pods {
                client.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.id.clone() }).await.expect("stop pod");
                client.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.id.clone() }).await.expect("remove pod");
            }
            serde_json::json!({"pods": pods.len(), "teardown_ms": millis(started)})
        }
        _ => panic!("{usage}"),
    };
    println!("{result}");
}
