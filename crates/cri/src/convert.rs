//! Library records as CRI messages, and the few rules every list and status shares (label
//! selectors, states, times).

use crate::proto;
use berth_containers::{ContainerRecord, SandboxRecord, SandboxState, State};
use std::collections::{BTreeMap, HashMap};

pub(crate) fn map(labels: &BTreeMap<String, String>) -> HashMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(crate) fn btree(labels: HashMap<String, String>) -> BTreeMap<String, String> {
    labels.into_iter().collect()
}

/// Every key of `selector` is in `labels` with the same value.
pub(crate) fn selected(selector: &HashMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The id is `id` or starts with it (crictl passes prefixes).
pub(crate) fn id_matches(filter: &str, id: &str) -> bool {
    filter.is_empty() || id.starts_with(filter)
}

pub(crate) fn nanos(ns: u64) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

pub(crate) fn sandbox_state(record: &SandboxRecord) -> proto::PodSandboxState {
    match record.state {
        SandboxState::Ready => proto::PodSandboxState::SandboxReady,
        SandboxState::Creating | SandboxState::NotReady => proto::PodSandboxState::SandboxNotready,
    }
}

pub(crate) fn pod_metadata(record: &SandboxRecord) -> proto::PodSandboxMetadata {
    let c = &record.config;
    proto::PodSandboxMetadata { name: c.name.clone(), uid: c.uid.clone(), namespace: c.namespace.clone(), attempt: c.attempt }
}

pub(crate) fn handler(record: &SandboxRecord) -> String {
    record.config.runtime.clone().unwrap_or_default()
}

pub(crate) fn pod_sandbox(record: &SandboxRecord) -> proto::PodSandbox {
    proto::PodSandbox {
        id: record.id.clone(),
        metadata: Some(pod_metadata(record)),
        state: sandbox_state(record) as i32,
        created_at: nanos(record.created_at),
        labels: map(&record.config.labels),
        annotations: map(&record.config.annotations),
        runtime_handler: handler(record),
    }
}

fn namespace_mode(host: bool, shared: proto::NamespaceMode) -> i32 {
    if host {
        proto::NamespaceMode::Node as i32
    } else {
        shared as i32
    }
}

pub(crate) fn pod_status(record: &SandboxRecord) -> proto::PodSandboxStatus {
    let c = &record.config;
    let options = proto::NamespaceOption {
        network: namespace_mode(c.host_network, proto::NamespaceMode::Pod),
        pid: namespace_mode(c.host_pid, if c.share_pid { proto::NamespaceMode::Pod } else { proto::NamespaceMode::Container }),
        ipc: namespace_mode(c.host_ipc, proto::NamespaceMode::Pod),
        ..Default::default()
    };
    proto::PodSandboxStatus {
        id: record.id.clone(),
        metadata: Some(pod_metadata(record)),
        state: sandbox_state(record) as i32,
        created_at: nanos(record.created_at),
        // The pod network's addresses; none for loopback only or the host's network (the
        // kubelet uses the node's then).
        network: Some(proto::PodSandboxNetworkStatus {
            ip: record.ips.first().cloned().unwrap_or_default(),
            additional_ips: record.ips.iter().skip(1).map(|ip| proto::PodIp { ip: ip.clone() }).collect(),
        }),
        linux: Some(proto::LinuxPodSandboxStatus { namespaces: Some(proto::Namespace { options: Some(options) }) }),
        labels: map(&c.labels),
        annotations: map(&c.annotations),
        runtime_handler: handler(record),
    }
}

pub(crate) fn container_state(state: State) -> proto::ContainerState {
    match state {
        State::Created => proto::ContainerState::ContainerCreated,
        State::Running => proto::ContainerState::ContainerRunning,
        State::Exited => proto::ContainerState::ContainerExited,
        State::Creating => proto::ContainerState::ContainerUnknown,
    }
}

pub(crate) fn container_metadata(record: &ContainerRecord) -> proto::ContainerMetadata {
    proto::ContainerMetadata { name: record.metadata_name.clone(), attempt: record.attempt }
}

pub(crate) fn image_spec(record: &ContainerRecord) -> proto::ImageSpec {
    proto::ImageSpec { image: record.image.clone(), ..Default::default() }
}

pub(crate) fn container(record: &ContainerRecord) -> proto::Container {
    proto::Container {
        id: record.id.clone(),
        pod_sandbox_id: record.sandbox.clone().unwrap_or_default(),
        metadata: Some(container_metadata(record)),
        image: Some(image_spec(record)),
        image_ref: record.image_id.clone(),
        state: container_state(record.state) as i32,
        created_at: nanos(record.created_at),
        labels: map(&record.labels),
        annotations: map(&record.annotations),
        image_id: record.image_id.clone(),
    }
}

/// Why it exited, as the kubelet reads it.
pub(crate) fn exit_reason(record: &ContainerRecord) -> &'static str {
    match (record.state, record.oom_killed, record.exit_code) {
        (State::Exited, true, _) => "OOMKilled",
        (State::Exited, false, Some(0)) => "Completed",
        (State::Exited, _, _) => "Error",
        _ => "",
    }
}

/// The container's status; `spec` (its runtime spec) gives its mounts and user.
pub(crate) fn container_status(record: &ContainerRecord, spec: &serde_json::Value, log_path: String) -> proto::ContainerStatus {
    let mounts = spec["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["type"].as_str() == Some("bind") && !m["source"].as_str().unwrap_or_default().is_empty())
        .filter(|m| !matches!(m["destination"].as_str(), Some("/etc/hosts" | "/etc/hostname" | "/etc/resolv.conf")))
        .map(|m| {
            let options: Vec<&str> = m["options"].as_array().into_iter().flatten().filter_map(|o| o.as_str()).collect();
            let propagation = if options.contains(&"rshared") {
                proto::MountPropagation::PropagationBidirectional
            } else if options.contains(&"rslave") {
                proto::MountPropagation::PropagationHostToContainer
            } else {
                proto::MountPropagation::PropagationPrivate
            };
            proto::Mount {
                container_path: m["destination"].as_str().unwrap_or_default().into(),
                host_path: m["source"].as_str().unwrap_or_default().into(),
                readonly: options.contains(&"ro"),
                propagation: propagation as i32,
                ..Default::default()
            }
        })
        .collect();
    let user = &spec["process"]["user"];
    let linux_user = proto::LinuxContainerUser {
        uid: user["uid"].as_i64().unwrap_or_default(),
        gid: user["gid"].as_i64().unwrap_or_default(),
        supplemental_groups: user["additionalGids"].as_array().into_iter().flatten().filter_map(|g| g.as_i64()).collect(),
    };
    let exited = record.state == State::Exited;
    proto::ContainerStatus {
        id: record.id.clone(),
        metadata: Some(container_metadata(record)),
        state: container_state(record.state) as i32,
        created_at: nanos(record.created_at),
        started_at: nanos(record.started_at),
        finished_at: if exited { nanos(record.finished_at) } else { 0 },
        exit_code: if exited { record.exit_code.unwrap_or(255) } else { 0 },
        image: Some(image_spec(record)),
        image_ref: record.image_id.clone(),
        reason: exit_reason(record).into(),
        message: String::new(),
        labels: map(&record.labels),
        annotations: map(&record.annotations),
        mounts,
        log_path,
        resources: None,
        image_id: record.image_id.clone(),
        user: Some(proto::ContainerUser { linux: Some(linux_user) }),
    }
}

/// One CRI image: every record (name) with that config, as tags and repo digests; the user from
/// its config (a uid, or a name).
pub(crate) fn image(records: &[berth_image::meta::ImageRecord], user: Option<&str>, pinned: bool) -> proto::Image {
    let first = &records[0];
    let mut repo_tags = Vec::new();
    let mut repo_digests = Vec::new();
    for record in records {
        let Ok(reference) = berth_image::Reference::parse(&record.name) else { continue };
        if reference.tag().is_some() && reference.digest().is_none() {
            repo_tags.push(record.name.clone());
        }
        let digest = format!("{}@{}", reference.name(), record.manifest);
        if !repo_digests.contains(&digest) {
            repo_digests.push(digest);
        }
    }
    let user = user.unwrap_or_default();
    let user = user.split(':').next().unwrap_or_default();
    let (uid, username) = match user.parse::<i64>() {
        Ok(uid) => (Some(proto::Int64Value { value: uid }), String::new()),
        Err(_) if user.is_empty() => (Some(proto::Int64Value { value: 0 }), String::new()),
        Err(_) => (None, user.to_string()),
    };
    proto::Image {
        id: first.config.to_string(),
        repo_tags,
        repo_digests,
        size: first.size,
        uid,
        username,
        spec: Some(proto::ImageSpec { image: first.config.to_string(), ..Default::default() }),
        pinned,
    }
}
