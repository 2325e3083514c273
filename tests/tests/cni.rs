//! berth-cni with Debian's plugins (bridge, host-local, portmap from /usr/lib/cni) in network
//! namespaces made by the test: two attachments on one bridge reach each other over TCP, a host
//! port on 127.0.0.1 reaches one, CHECK and DEL (twice) work, eight ADDs at once get eight
//! addresses. Afterwards nothing of the attachments is left (veths, rules naming them, IP
//! allocations) and the host is as it was (HostNetwork). One test: the steps share one bridge
//! and the host's iptables.

use berth_cni::{Attachment, Cni, NetworkList};
use berth_testsupport::{HostNetwork, NetNs, TestEnv};
use std::path::Path;
use std::time::{Duration, Instant};

const PLUGINS: &str = "/usr/lib/cni";

fn attachment(id: &str, ns: &NetNs, ports: serde_json::Value) -> Attachment {
    Attachment {
        container_id: id.into(),
        netns: ns.path.clone(),
        ifname: "eth0".into(),
        args: vec![("K8S_POD_NAME".into(), id.into())],
        capability_args: [("portMappings".to_string(), ports)].into_iter().collect(),
    }
}

fn wget(ns: Option<&NetNs>, url: &str) -> Result<String, String> {
    let args = ["timeout", "5", "busybox", "wget", "-q", "-O", "-", url];
    let mut command = match ns {
        Some(ns) => ns.command(&args),
        None => {
            let mut c = std::process::Command::new(args[0]);
            c.args(&args[1..]);
            c
        }
    };
    let out = command.output().map_err(|e| e.to_string())?;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        false => Err(format!("wget {url}: {}", String::from_utf8_lossy(&out.stderr))),
    }
}

/// Puts the host back (bridge, plumbing rules, ip_forward) even when the test panics.
struct Restore<'a> {
    host: Option<HostNetwork>,
    bridge: &'a str,
    ipam_dir: &'a Path,
    ids: &'a [String],
}

impl Restore<'_> {
    fn leaks(mut self) -> Vec<String> {
        self.host.take().expect("once").leaks_then_restore(self.bridge, self.ipam_dir, self.ids)
    }
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if let Some(host) = self.host.take() {
            host.leaks_then_restore(self.bridge, self.ipam_dir, self.ids);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_plugins_connect_attachments_on_a_bridge_with_a_host_port() {
    assert!(Path::new(PLUGINS).join("bridge").exists(), "Debian's containernetworking-plugins are not installed (scripts/install-deps.sh)");
    let env = TestEnv::new("cni");
    let pid = std::process::id();
    let bridge = format!("bcni{}", pid % 100_000);
    let subnet = format!("10.231.{}.0/24", pid % 250);
    let ipam_dir = env.dir.join("ipam");
    let host_port = 20_000 + (pid % 10_000) as u16;
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": format!("berth-test-{pid}"),
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": ipam_dir}},
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ]
    });
    let network = NetworkList::parse(conflist.to_string().as_bytes(), false, Path::new("test.conflist")).unwrap();
    let cni = Cni::new(vec![PLUGINS.into()], env.dir.join("cni-cache"));
    assert!(cni.version("bridge").await.unwrap().contains(&"1.0.0".to_string()));
    cni.status(&network).await.unwrap();

    let ids: Vec<String> = ["a", "b"].iter().map(|n| format!("berthcni{pid}{n}")).chain((0..8).map(|i| format!("berthcni{pid}p{i}"))).collect();
    let restore = Restore { host: Some(HostNetwork::snapshot()), bridge: &bridge, ipam_dir: &ipam_dir, ids: &ids };
    let namespaces: Vec<NetNs> = (0..10).map(|i| NetNs::new(&env.dir.join(format!("ns-{i}")))).collect();
    let ports = serde_json::json!([{"hostPort": host_port, "containerPort": 8080, "protocol": "tcp", "hostIP": "127.0.0.1"}]);
    let attachments: Vec<Attachment> = ids
        .iter()
        .zip(&namespaces)
        .enumerate()
        .map(|(i, (id, ns))| attachment(id, ns, if i == 0 { ports.clone() } else { serde_json::json!([]) }))
        .collect();
    let (a, b, (a_ns, b_ns)) = (&attachments[0], &attachments[1], (&namespaces[0], &namespaces[1]));

    let a_ip = cni.add(&network, a).await.unwrap().result.sandbox_ips().remove(0);
    let b_ip = cni.add(&network, b).await.unwrap().result.sandbox_ips().remove(0);
    let prefix = subnet.trim_end_matches("0/24");
    assert!(a_ip.starts_with(prefix) && b_ip.starts_with(prefix) && a_ip != b_ip, "{a_ip} {b_ip} in {subnet}");
    assert!(a_ns.exec(&["ip", "-o", "addr", "show", "eth0"]).contains(&format!("{a_ip}/24")));
    // CHECK of the attachment without ports (Debian's portmap 1.1.1 fails CHECK of a mapping on a
    // host without IPv6 chains: "could not check ipv6 dnat"; the kubelet never asks for CHECK).
    cni.check(&network.name, b).await.unwrap();

    // A web server in a; b reaches it by IP, the host through the host port on 127.0.0.1.
    let www = env.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from a\n").unwrap();
    let mut server = a_ns.command(&["busybox", "httpd", "-f", "-p", "8080", "-h", www.to_str().unwrap()]).spawn().unwrap();
    let started = Instant::now();
    while wget(Some(a_ns), "http://127.0.0.1:8080/").is_err() && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let from_b = wget(Some(b_ns), &format!("http://{a_ip}:8080/"));
    let from_host = wget(None, &format!("http://127.0.0.1:{host_port}/"));
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(from_b.as_deref(), Ok("hello from a"), "b to a by IP");
    assert_eq!(from_host.as_deref(), Ok("hello from a"), "the host to a through 127.0.0.1:{host_port}");

    // Eight ADDs at once (host-local serialises on its own lock): eight different addresses.
    let mut adds = tokio::task::JoinSet::new();
    for att in &attachments[2..] {
        let (cni, network, att) = (cni.clone(), network.clone(), att.clone());
        adds.spawn(async move { cni.add(&network, &att).await });
    }
    let mut ips: Vec<String> = adds.join_all().await.into_iter().map(|r| r.unwrap().result.sandbox_ips().remove(0)).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 8, "{ips:?}");

    // DEL of everything, twice: the second finds nothing to do.
    for att in &attachments {
        cni.del(&network.name, att).await.unwrap();
        cni.del(&network.name, att).await.unwrap();
    }
    assert!(cni.cache().all().is_empty());
    drop(namespaces);
    let leaks = restore.leaks();
    assert!(leaks.is_empty(), "left behind:\n{}", leaks.join("\n"));
    env.leak_check();
}
