//! `berth run` on bridge networks, end to end with Debian's CNI plugins: the default network
//! (`bridge`) with a port published on 127.0.0.1, `-P` (the image's EXPOSEd ports), `berth port`,
//! a port published twice refused, a user network whose containers reach each other by name both ways (one started after the
//! other), a container on another's network (`container:NAME`), `network rm` refused while in use and then taking the bridge; nothing left behind (no
//! veth, rule, allocation, bridge), proven by testsupport's HostNetwork.

use berth_testsupport::{busybox_registry, Berthd, HostNetwork, TestEnv};
use std::io::{Read, Write};

/// An HTTP GET of `/` on 127.0.0.1:`port` from the host; the body, or "" when nothing answers.
fn get(port: u16) -> String {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let _ = stream.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.split_once("\r\n\r\n").map(|(_, body)| body.trim().to_string()).unwrap_or_default()
}

fn retry(mut attempt: impl FnMut() -> String) -> String {
    let mut got = String::new();
    for _ in 0..50 {
        got = attempt();
        if !got.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    got
}

#[test]
fn run_publishes_ports_and_containers_on_a_network_reach_each_other_by_name() {
    let env = TestEnv::new("networks");
    let registry = busybox_registry(&env);
    let pid = std::process::id();
    let (default_bridge, default_subnet) = (format!("bnd{}", pid % 100_000), format!("10.236.{}.0/24", pid % 250));
    let n1_subnet = format!("10.237.{}.0/24", pid % 250);
    let host_port = 21_000 + (pid % 10_000) as u16;
    let host = HostNetwork::snapshot();
    let extra = format!("default_network = \"bridge\"\ndefault_bridge = {default_bridge:?}\ndefault_subnet = {default_subnet:?}\n");
    let berthd = Berthd::start_with(&env, &[&registry.address], &extra, None);
    let image = format!("{}/test/busybox:v1", registry.address);
    berthd.ok(&env, &["pull", &image]);
    let serve = |name: &str| format!("echo hello from {name} > /tmp/index.html; exec httpd -f -p 80 -h /tmp");

    // The default network, made on first use; a port on 127.0.0.1 reaches the container.
    let published = format!("127.0.0.1:{host_port}:80");
    let web = berthd.ok(&env, &["run", "-d", "--name", "web", "-p", &published, &image, "sh", "-c", &serve("web")]).trim().to_string();
    let from_host = retry(|| get(host_port));
    let port_line = berthd.ok(&env, &["port", "web"]);
    let inspected = serde_json::from_str::<serde_json::Value>(&berthd.ok(&env, &["inspect", "web"])).unwrap()[0].clone();
    let web_ip = inspected["network"]["ips"][0].as_str().unwrap_or_default().to_string();
    let twice = berthd.berth(&env, &["run", "-d", "--name", "web2", "-p", &published, &image, "sleep", "100"]);
    let in_use = berthd.berth(&env, &["run", "-d", "--network", "none", "-p", "80", &image, "true"]);

    // -P: every port the image EXPOSEs, each on a host port berthd picks; a -p of one wins.
    let layout = berth_testsupport::busybox_layout(&env, "v1");
    berth_testsupport::patch_layout_config(&layout, |c| c["config"]["ExposedPorts"] = serde_json::json!({"80/tcp": {}, "8125/udp": {}, "9000": {}}));
    registry.push(&layout, "v1", "test/exposing");
    let exposing = format!("{}/test/exposing:v1", registry.address);
    berthd.ok(&env, &["pull", &exposing]);
    let nine = 21_000 + ((pid + 1) % 10_000) as u16;
    let all = berthd.ok(&env, &["run", "-d", "--name", "all", "-P", "-p", &format!("127.0.0.1:{nine}:9000"), &exposing, "sh", "-c", &serve("all")]);
    let all_ports = berthd.ok(&env, &["port", "all"]);
    let chosen = |wanted: &str| -> u16 {
        let line = all_ports.lines().find(|l| l.starts_with(wanted)).unwrap_or_default();
        line.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
    };
    let (eighty, udp) = (chosen("80/tcp -> 0.0.0.0:"), chosen("8125/udp -> 0.0.0.0:"));
    let from_all = retry(|| get(eighty));
    berthd.ok(&env, &["rm", "-f", "all"]);
    let host_network_all = berthd.berth(&env, &["run", "--network", "host", "-P", &exposing, "true"]);

    // A network of the user's: a1 first, a2 later; each fetches from the other by name.
    berthd.ok(&env, &["network", "create", "--subnet", &n1_subnet, "n1"]);
    let a1 = berthd.ok(&env, &["run", "-d", "--name", "a1", "--network", "n1", &image, "sh", "-c", &serve("a1")]).trim().to_string();
    let a2 = berthd.ok(&env, &["run", "-d", "--name", "a2", "--net", "n1", &image, "sh", "-c", &serve("a2")]).trim().to_string();
    let fetch = |from: &str, to: &str| {
        // (busybox's wget crashes on a name with -T: timeout bounds it instead.)
        let out = berthd.berth(&env, &["exec", from, "timeout", "5", "wget", "-q", "-O", "-", &format!("http://{to}/")]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let a1_to_a2 = retry(|| fetch("a1", "a2"));
    let a2_to_a1 = retry(|| fetch("a2", "a1"));
    let web_to_a1 = fetch("web", "a1");

    // On a1's network (container:a1): a1's loopback and address, its hostname, its /etc/hosts
    // (a2's name in it); what docker refuses with it is refused; only a running one is joined.
    berthd.ok(&env, &["run", "-d", "--name", "side", "--network", "container:a1", &image, "sleep", "1000"]);
    let side_to_a1 = retry(|| fetch("side", "127.0.0.1"));
    let side_to_a2 = fetch("side", "a2");
    let said = |args: &[&str]| String::from_utf8_lossy(&berthd.berth(&env, args).stdout).trim().to_string();
    let hostnames = (said(&["exec", "side", "hostname"]), said(&["exec", "a1", "hostname"]));
    let addresses =
        (said(&["exec", "side", "ip", "-4", "-o", "addr", "show", "eth0"]), said(&["exec", "a1", "ip", "-4", "-o", "addr", "show", "eth0"]));
    let side_info = serde_json::from_str::<serde_json::Value>(&berthd.ok(&env, &["inspect", "side"])).unwrap()[0].clone();
    let conflicts: Vec<std::process::Output> = [&["-p", "8080:80"][..], &["--hostname", "x"], &["--dns", "192.0.2.1"]]
        .iter()
        .map(|extra| berthd.berth(&env, &[&["run", "--network", "container:a1"][..], extra, &[&image, "true"]].concat()))
        .collect();
    berthd.ok(&env, &["create", "--name", "idle", &image, "true"]);
    let not_running = berthd.berth(&env, &["run", "--network", "container:idle", &image, "true"]);
    let unknown = berthd.berth(&env, &["run", "--network", "container:nobody", &image, "true"]);
    berthd.ok(&env, &["rm", "-f", "side", "idle"]);
    let listed: serde_json::Value = serde_json::from_str(&berthd.ok(&env, &["network", "ls", "--format", "json"])).unwrap();
    let n1_info: serde_json::Value = serde_json::from_str(&berthd.ok(&env, &["network", "inspect", "n1"])).unwrap();
    let n1_bridge = n1_info[0]["bridge"].as_str().unwrap_or_default().to_string();
    let busy = berthd.berth(&env, &["network", "rm", "n1"]);

    // Removal: a2 goes and leaves a1's /etc/hosts; then everything.
    berthd.ok(&env, &["rm", "-f", "a2"]);
    let a1_hosts = String::from_utf8_lossy(&berthd.berth(&env, &["exec", "a1", "cat", "/etc/hosts"]).stdout).into_owned();
    berthd.ok(&env, &["rm", "-f", "a1", "web"]);
    berthd.ok(&env, &["network", "rm", "n1", "bridge"]);
    let bridges_left: Vec<String> =
        [&default_bridge, &n1_bridge].into_iter().filter(|b| std::path::Path::new("/sys/class/net").join(b).exists()).cloned().collect();
    let networks_left = berthd.ok(&env, &["network", "ls"]);
    let ipam = berthd.root.join("networks/ipam");
    let ids = [web.clone(), a1.clone(), a2.clone(), all.trim().to_string()];
    drop(berthd);
    let mut leaks = host.leaks_then_restore(&default_bridge, &ipam, &ids);
    leaks.extend(host.leaks_then_restore(&n1_bridge, &ipam, &ids));

    assert_eq!(from_host, "hello from web", "the host to web through 127.0.0.1:{host_port}");
    assert_eq!(port_line.trim(), format!("80/tcp -> 127.0.0.1:{host_port}"));
    assert!(web_ip.starts_with(default_subnet.trim_end_matches("0/24")), "web's address {web_ip} is from the default network");
    assert!(!twice.status.success() && String::from_utf8_lossy(&twice.stderr).contains("already published by container web"), "{twice:?}");
    assert!(!in_use.status.success() && String::from_utf8_lossy(&in_use.stderr).contains("bridge network"), "{in_use:?}");
    assert!(eighty > 0 && udp > 0 && eighty != udp, "-P chose a host port for 80/tcp and 8125/udp:\n{all_ports}");
    assert!(all_ports.contains(&format!("9000/tcp -> 127.0.0.1:{nine}")) && all_ports.lines().count() == 3, "-p 9000 wins over -P:\n{all_ports}");
    assert_eq!(from_all, "hello from all", "the host reaches 80/tcp through the port -P chose ({eighty})");
    assert!(
        !host_network_all.status.success() && String::from_utf8_lossy(&host_network_all.stderr).contains("bridge network"),
        "{host_network_all:?}"
    );
    assert_eq!(a1_to_a2, "hello from a2", "a1 finds a2 (started after it) by name");
    assert_eq!(a2_to_a1, "hello from a1", "a2 finds a1 by name");
    assert_eq!(web_to_a1, "", "another network's container does not know a1");
    assert_eq!(side_to_a1, "hello from a1", "side shares a1's loopback");
    assert_eq!(side_to_a2, "hello from a2", "side resolves a2 through a1's /etc/hosts");
    assert!(!hostnames.0.is_empty() && hostnames.0 == hostnames.1, "side has a1's hostname: {hostnames:?}");
    assert!(addresses.0.contains(&n1_subnet.trim_end_matches("0/24").to_string()) && addresses.0 == addresses.1, "side has a1's eth0: {addresses:?}");
    assert_eq!(side_info["network"]["name"], "container:a1");
    for conflict in &conflicts {
        assert!(!conflict.status.success(), "refused with container:a1: {conflict:?}");
    }
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!not_running.status.success() && stderr(&not_running).contains("only a running container's network"), "{not_running:?}");
    assert!(!unknown.status.success() && stderr(&unknown).contains("nobody"), "{unknown:?}");
    let n1 = listed.as_array().unwrap().iter().find(|n| n["name"] == "n1").unwrap().clone();
    assert_eq!((n1["subnet"].as_str().unwrap(), n1["containers"].clone()), (n1_subnet.as_str(), serde_json::json!(["a1", "a2"])));
    assert!(!busy.status.success() && String::from_utf8_lossy(&busy.stderr).contains("has containers: a1, a2"), "{busy:?}");
    // (By whole words: a short id may well hold "a2".)
    let named = |name: &str| a1_hosts.split_whitespace().any(|word| word == name);
    assert!(named("a1") && !named("a2"), "a2 left a1's /etc/hosts:\n{a1_hosts}");
    assert!(bridges_left.is_empty(), "network rm leaves no bridge: {bridges_left:?}");
    assert_eq!(networks_left.lines().count(), 1, "only the header is left:\n{networks_left}");
    assert!(leaks.is_empty(), "left behind:\n{}", leaks.join("\n"));
    env.leak_check();
}

/// An HTTP GET of `/` on `address` from the host; the body, or "" when nothing answers.
fn get_at(address: std::net::SocketAddr) -> String {
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(2)) else { return String::new() };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let _ = stream.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.split_once("\r\n\r\n").map(|(_, body)| body.trim().to_string()).unwrap_or_default()
}

/// A network with IPv6 (`network create --ipv6`): a /64 of berth's pool beside its IPv4 subnet.
/// Each container gets both addresses, listed by name in its neighbours' /etc/hosts; containers
/// and the host reach each other over IPv6, and a published port answers on the network's IPv6
/// gateway; an IPv6 host address on an IPv4-only network is refused. Nothing is left (ip6tables
/// rules included).
#[test]
fn ipv6_networks_give_containers_both_addresses() {
    let env = TestEnv::new("networks-ipv6");
    let registry = busybox_registry(&env);
    let pid = std::process::id();
    let subnet = format!("10.241.{}.0/24", pid % 250);
    let host_port = 24_000 + (pid % 10_000) as u16;
    let host = HostNetwork::snapshot();
    let berthd = Berthd::start_with(&env, &[&registry.address], "", None);
    let image = format!("{}/test/busybox:v1", registry.address);
    berthd.ok(&env, &["pull", &image]);

    berthd.ok(&env, &["network", "create", "--ipv6", "--subnet", &subnet, "six"]);
    let info: serde_json::Value = serde_json::from_str(&berthd.ok(&env, &["network", "inspect", "six"])).unwrap();
    let (subnet6, gateway6) =
        (info[0]["subnet6"].as_str().unwrap_or_default().to_string(), info[0]["gateway6"].as_str().unwrap_or_default().to_string());
    let serve = "echo hello from s1 > /tmp/index.html; exec httpd -f -p 80 -h /tmp";
    let s1 = berthd.ok(&env, &["run", "-d", "--name", "s1", "--network", "six", "-p", &format!("{host_port}:80"), &image, "sh", "-c", serve]);
    let s2 = berthd.ok(&env, &["run", "-d", "--name", "s2", "--network", "six", &image, "sleep", "1000"]);
    let inspected = serde_json::from_str::<serde_json::Value>(&berthd.ok(&env, &["inspect", "s1"])).unwrap()[0].clone();
    let ips: Vec<String> = inspected["network"]["ips"].as_array().unwrap().iter().map(|ip| ip.as_str().unwrap().to_string()).collect();
    let v6: std::net::Ipv6Addr = ips.iter().find_map(|ip| ip.parse().ok()).unwrap_or(std::net::Ipv6Addr::UNSPECIFIED);
    let from_s2 = retry(|| {
        let out = berthd.berth(&env, &["exec", "s2", "timeout", "5", "wget", "-q", "-O", "-", &format!("http://[{v6}]/")]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    });
    let s2_hosts = String::from_utf8_lossy(&berthd.berth(&env, &["exec", "s2", "cat", "/etc/hosts"]).stdout).into_owned();
    let from_host = retry(|| get_at((v6, 80).into()));
    let gateway: std::net::Ipv6Addr = gateway6.parse().unwrap_or(std::net::Ipv6Addr::UNSPECIFIED);
    let published = retry(|| get_at((gateway, host_port).into()));
    let two_v6 = berthd.berth(&env, &["network", "create", "--subnet", "fd00:1::/64", "--subnet", "fd00:2::/64", "bad"]);
    let v6_on_v4 = berthd.berth(&env, &["network", "create", "--subnet", &format!("10.242.{}.0/24", pid % 250), "four"]);
    let v6_host_ip = berthd.berth(&env, &["run", "--network", "four", "-p", "[::1]:8080:80", &image, "true"]);
    let bridge = info[0]["bridge"].as_str().unwrap_or_default().to_string();
    let four_bridge = berthd.ok(&env, &["network", "inspect", "four"]);
    berthd.ok(&env, &["rm", "-f", "s1", "s2"]);
    berthd.ok(&env, &["network", "rm", "six", "four"]);
    let ipam = berthd.root.join("networks/ipam");
    drop(berthd);
    let ids = [s1.trim().to_string(), s2.trim().to_string()];
    let leaks = host.leaks_then_restore(&bridge, &ipam, &ids);

    assert!(subnet6.starts_with("fd62:6572:7468:") && subnet6.ends_with("::/64"), "a /64 of berth's pool: {subnet6:?}");
    assert_eq!(ips.len(), 2, "an IPv4 and an IPv6 address: {ips:?}");
    assert!(subnet6.starts_with(&format!("{:x}:", v6.segments()[0])) && v6.segments()[..4] != [0; 4], "{v6} is from {subnet6}");
    assert_eq!(from_s2, "hello from s1", "s2 reaches s1 on [{v6}]");
    assert!(
        s2_hosts.lines().any(|l| l.starts_with(&v6.to_string()) && l.split_whitespace().any(|w| w == "s1")),
        "s1's IPv6 address by name:\n{s2_hosts}"
    );
    assert_eq!(from_host, "hello from s1", "the host reaches s1 on [{v6}]:80");
    assert_eq!(published, "hello from s1", "the published port answers on [{gateway6}]:{host_port}");
    assert!(!two_v6.status.success(), "two IPv6 subnets refused: {two_v6:?}");
    assert!(v6_on_v4.status.success() && !four_bridge.contains("subnet6"), "{v6_on_v4:?}");
    assert!(!v6_host_ip.status.success() && String::from_utf8_lossy(&v6_host_ip.stderr).contains("has no IPv6"), "{v6_host_ip:?}");
    assert!(leaks.is_empty(), "left behind:\n{}", leaks.join("\n"));
    env.leak_check();
}

/// kill -9 of berthd while a `berth run` is in its CNI ADD (bridge, slowed by a wrapper the test
/// steers with files, finishes on its own meanwhile): after the restart the half-made container
/// is gone, with its address, veth, port rules and namespace pin.
#[test]
fn berthd_killed_during_a_runs_add_leaves_nothing_after_restart() {
    let env = TestEnv::new("networks-kill-add");
    let registry = busybox_registry(&env);
    let pid = std::process::id();
    let (bridge, subnet) = (format!("bka{}", pid % 100_000), format!("10.238.{}.0/24", pid % 250));
    let (bin, marks) = (env.dir.join("cni-bin"), env.dir.join("marks"));
    for dir in [&bin, &marks] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let m = marks.display();
    let wrapper = format!(
        "#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ]; then touch {m}/started-ADD; sleep 2; fi\n/usr/lib/cni/bridge\nrc=$?\ntouch {m}/done-$CNI_COMMAND\nexit $rc\n"
    );
    std::fs::write(bin.join("bridge"), wrapper).unwrap();
    std::fs::set_permissions(bin.join("bridge"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let host_port = 23_000 + (pid % 10_000) as u16;
    let host = HostNetwork::snapshot();
    let extra = format!(
        "default_network = \"bridge\"\ndefault_bridge = {bridge:?}\ndefault_subnet = {subnet:?}\ncni_bin_dirs = [{bin:?}, \"/usr/lib/cni\"]\n"
    );
    let start = || Berthd::start_with(&env, &[&registry.address], &extra, None);
    let image = format!("{}/test/busybox:v1", registry.address);
    let mut berthd = start();
    berthd.ok(&env, &["pull", &image]);
    let ipam = berthd.root.join("networks/ipam");
    let allocations = || berth_testsupport::ip_allocations(&ipam);

    let mut run = std::process::Command::new(berth_testsupport::workspace_bin("berth"))
        .arg("--socket")
        .arg(&berthd.socket)
        .args(["run", "-d", "--name", "half", "-p", &format!("127.0.0.1:{host_port}:80"), &image, "sleep", "100"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    berth_testsupport::wait_for_file(&marks.join("started-ADD"));
    berthd.child.kill().unwrap();
    berthd.child.wait().unwrap();
    assert!(!run.wait().unwrap().success(), "the client of a berthd killed mid-run fails");
    berth_testsupport::wait_for_file(&marks.join("done-ADD"));
    assert_eq!(allocations().len(), 1, "the orphaned ADD allocated an address");
    // Not dropped: a test Berthd's drop cleans up, which the restart must do by itself.
    std::mem::forget(berthd);

    let berthd = start();
    let listed = berthd.ok(&env, &["ps", "-a", "-q"]);
    let left = allocations();
    let pins = std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.contains(&*env.dir.to_string_lossy())).count();
    berthd.ok(&env, &["network", "rm", "bridge"]);
    drop(berthd);
    let leaks = host.leaks_then_restore(&bridge, &ipam, &[]);
    assert_eq!(listed.trim(), "", "the container berthd died creating was removed");
    assert!(left.is_empty(), "its address was released: {left:?}");
    assert_eq!(pins, 0, "no namespace pin or rootfs left mounted");
    assert!(leaks.is_empty(), "left behind:\n{}", leaks.join("\n"));
    env.leak_check();
}

/// CNI garbage collection at berthd's start: an attachment the CNI cache holds for no container or
/// pod of berthd's (made here straight through berth-cni, as a DEL that never finished would
/// leave it) is deleted: its address, veth and cache entry go.
#[test]
fn berthd_collects_cni_attachments_nobody_owns_at_start() {
    let env = TestEnv::new("networks-gc");
    let pid = std::process::id();
    let subnet = format!("10.239.{}.0/24", pid % 250);
    let host = HostNetwork::snapshot();
    let berthd = Berthd::start_with(&env, &[], "", None);
    berthd.ok(&env, &["network", "create", "--subnet", &subnet, "gcnet"]);
    let info: serde_json::Value = serde_json::from_str(&berthd.ok(&env, &["network", "inspect", "gcnet"])).unwrap();
    let bridge = info[0]["bridge"].as_str().unwrap().to_string();
    let (root, ipam) = (berthd.root.clone(), berthd.root.join("networks/ipam"));
    berthd.stop();

    let netns = berth_testsupport::NetNs::new(&env.dir.join("stale-netns"));
    let cni = berth_cni::Cni::new(vec!["/usr/lib/cni".into()], root.join("cni"));
    let list = berth_cni::NetworkList::load(std::path::Path::new(info[0]["config"].as_str().unwrap())).unwrap();
    let stale = berth_cni::Attachment {
        container_id: "stale0123456789".into(),
        netns: netns.path.clone(),
        ifname: "eth0".into(),
        args: Vec::new(),
        capability_args: Default::default(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(cni.add(&list, &stale)).unwrap();
    let before = (berth_testsupport::ip_allocations(&ipam).len(), cni.cache().all().len());

    let berthd = Berthd::start_with(&env, &[], "", None);
    let after = (berth_testsupport::ip_allocations(&ipam), cni.cache().all().len(), netns.exec(&["ip", "-o", "link", "show"]));
    berthd.ok(&env, &["network", "rm", "gcnet"]);
    drop(berthd);
    drop(netns);
    let leaks = host.leaks_then_restore(&bridge, &ipam, std::slice::from_ref(&stale.container_id));
    assert_eq!(before, (1, 1), "the stale attachment holds an address and a cache entry");
    assert!(after.0.is_empty() && after.1 == 0, "berthd's start deleted it: {:?}, {} cache entries", after.0, after.1);
    assert!(!after.2.contains("eth0"), "its interface went:\n{}", after.2);
    assert!(leaks.is_empty(), "left behind:\n{}", leaks.join("\n"));
    env.leak_check();
}
