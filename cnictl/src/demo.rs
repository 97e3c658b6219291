//! `cnictl demo`: two "containers" (namespaces) on a bridge network with a published port,
//! shown step by step, then torn down. Everything happens inside a sandbox namespace that
//! plays the host, so the machine's own interfaces, firewall and sysctls are never touched.

use kernel::netlink::Netlink;
use kernel::netns::Netns;
use serde_json::{json, Map};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::conf;
use crate::runtime::{Attachment, Runtime};
use crate::CtlError;

const SUBNET: &str = "10.199.0.0/24";
const GATEWAY: &str = "10.199.0.1";
const BODY: &str = "hello from the web container";

fn step(n: u32, text: &str) {
    println!("\n\x1b[1m[{n}] {text}\x1b[0m");
}

/// What the demo made, removed on drop even when a step fails half-way.
struct Scene {
    names: Vec<String>,
    dir: PathBuf,
    server: Option<Child>,
}

impl Drop for Scene {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        for name in self.names.iter().rev() {
            let _ = Netns::delete(name);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The plugins: next to this binary (a build or install dir), else CNI_PATH, else /opt/cni/bin.
fn plugin_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(own) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(own);
    }
    dirs.extend(cni::invoke::split_path(
        std::env::var_os("CNI_PATH").unwrap_or_default(),
    ));
    dirs.push(PathBuf::from("/opt/cni/bin"));
    dirs
}

/// Spawns this binary (or another program) inside `netns`.
fn spawn_in(netns: &Netns, program: &Path, args: &[&str]) -> Result<Child, CtlError> {
    let io = |e| CtlError::Io(program.to_path_buf(), e);
    netns
        .command(program)
        .map_err(io)?
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io)
}

/// One HTTP GET from inside `netns`.
fn http_get(netns: &Netns, address: &str) -> Result<String, CtlError> {
    let address = address.to_string();
    netns
        .run(move || -> std::io::Result<String> {
            let mut stream = TcpStream::connect_timeout(
                &address.parse().map_err(std::io::Error::other)?,
                Duration::from_secs(3),
            )?;
            stream.set_read_timeout(Some(Duration::from_secs(3)))?;
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut reply = String::new();
            stream.read_to_string(&mut reply)?;
            Ok(reply
                .split("\r\n\r\n")
                .nth(1)
                .unwrap_or_default()
                .to_string())
        })?
        .map_err(|e| CtlError::Io(PathBuf::from("http"), e))
}

/// A ping from inside `netns`: busybox's when there is one, else a TCP connect to port 80.
fn ping(netns: &Netns, address: &str) -> Result<String, CtlError> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists());
    if let Some(busybox) = busybox {
        let mut child = spawn_in(netns, busybox, &["ping", "-c", "1", "-W", "2", address])?;
        let ok = child.wait().map(|s| s.success()).unwrap_or(false);
        return Ok(if ok {
            format!("{address} answers ICMP echo")
        } else {
            format!("{address} did not answer")
        });
    }
    let target = format!("{address}:80");
    let reached = netns.run(move || {
        target.parse().is_ok_and(|address| {
            TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok()
        })
    })?;
    Ok(format!(
        "{address} {} (TCP; install busybox-static for ICMP)",
        if reached {
            "is reachable"
        } else {
            "is unreachable"
        }
    ))
}

pub fn run() -> Result<(), CtlError> {
    let id = std::process::id();
    let dir = std::env::temp_dir().join(format!("cnictl-demo-{id}"));
    let mut scene = Scene {
        names: Vec::new(),
        dir: dir.clone(),
        server: None,
    };
    step(
        1,
        "A sandbox namespace plays the host, so this machine's own network is never touched",
    );
    let host_name = format!("demo-host-{id}");
    let host = Netns::create(&host_name)?;
    scene.names.push(host_name.clone());
    let mut netlink = Netlink::open_in(&host).map_err(cni::Error::from)?;
    let lo = netlink.link("lo").map_err(cni::Error::from)?;
    netlink
        .set_link_up(lo.index, true)
        .map_err(cni::Error::from)?;
    println!("    host namespace: {}", host.path().display());

    step(
        2,
        "A network config: bridge (gateway, masquerade) + portmap, as a runtime would load it",
    );
    let conf_dir = dir.join("net.d");

    let config = json!({
        "cniVersion": "1.1.0",
        "name": "demo",
        "plugins": [
            {"type": "bridge", "bridge": "demo0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
             "ipam": {"type": "host-local", "dataDir": dir.join("ipam").display().to_string(),
                      "ranges": [[{"subnet": SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    let file = conf_dir.join("10-demo.conflist");
    kernel::files::replace(
        &file,
        serde_json::to_string_pretty(&config)
            .unwrap_or_default()
            .as_bytes(),
        kernel::files::PRIVATE_FILE,
        kernel::files::PRIVATE_DIR,
    )
    .map_err(|e| CtlError::Io(file.clone(), e))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&config).unwrap_or_default()
    );
    let network = conf::load(&conf_dir, "demo")?;
    let runtime = Runtime {
        cni_path: plugin_dirs(),
        cache_dir: dir.join("cache"),
        host: Some(host),
    };

    step(3, "Two containers (namespaces) attached to it; the web one publishes port 80 on host port 8080");
    let mut attached = Vec::new();
    for (role, ports) in [
        (
            "web",
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
        ),
        ("client", json!([])),
    ] {
        let name = format!("demo-{role}-{id}");
        Netns::create(&name)?;
        scene.names.push(name.clone());
        let mut capability_args = Map::new();
        capability_args.insert("portMappings".into(), ports);
        let attachment = Attachment {
            container_id: name.clone(),
            netns: Path::new(kernel::netns::NETNS_DIR)
                .join(&name)
                .display()
                .to_string(),
            ifname: "eth0".into(),
            cni_args: vec![("IgnoreUnknown".into(), "1".into())],
            capability_args,
        };
        let result = runtime.add(&network, &attachment)?;
        let address = result["ips"][0]["address"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        println!("    {role:<7} {name:<22} eth0 {address}  gateway {GATEWAY}");
        attached.push((role, name, attachment, address));
    }
    let web_ip = attached[0]
        .3
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let web_ns = Netns::open(&attached[0].2.netns)?;
    let client_ns = Netns::open(&attached[1].2.netns)?;

    step(4, "The web container serves HTTP on port 80");
    let own = std::env::current_exe().map_err(|e| CtlError::Io(PathBuf::from("cnictl"), e))?;
    scene.server = Some(spawn_in(
        &web_ns,
        &own,
        &["serve-http", "--port", "80", "--body", BODY],
    )?);
    let host_ns = runtime
        .host
        .as_ref()
        .ok_or_else(|| CtlError::Usage("no host".into()))?;
    // Wait until it listens (probing from the host: the container's own lo is down).
    for _ in 0..100 {
        if http_get(host_ns, &format!("{web_ip}:80")).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    step(5, "The client pings the web container across the bridge");
    println!("    {}", ping(&client_ns, &web_ip)?);

    step(6, "The published port answers on the host (DNAT), and from the client through the host (hairpin)");
    println!(
        "    host   -> {GATEWAY}:8080: {:?}",
        http_get(host_ns, &format!("{GATEWAY}:8080"))?
    );
    println!(
        "    client -> {GATEWAY}:8080: {:?}",
        http_get(&client_ns, &format!("{GATEWAY}:8080"))?
    );

    step(7, "Tearing down: DEL in reverse order, then the namespaces");
    for (role, name, attachment, _) in attached.iter().rev() {
        runtime.del(&network, attachment)?;
        println!("    detached {role} ({name})");
    }
    drop(scene);
    let left: Vec<String> = Netns::list()
        .into_iter()
        .filter(|n| n.ends_with(&format!("-{id}")))
        .collect();
    let cache_left = dir.join("cache").exists();
    step(8, "Nothing is left");
    println!("    demo namespaces left: {left:?}; demo files left: {cache_left}");
    if !left.is_empty() || cache_left {
        return Err(CtlError::Usage("the demo left something behind".into()));
    }
    println!("\nDone. Try it yourself: cnictl --help");
    Ok(())
}

/// A tiny HTTP server for the demo's web container.
pub fn serve_http(port: u16, body: &str) -> Result<(), CtlError> {
    let listener = TcpListener::bind(("0.0.0.0", port))
        .map_err(|e| CtlError::Io(PathBuf::from("listen"), e))?;
    for stream in listener.incoming().flatten() {
        let mut stream = stream;
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request);
        let reply = format!(
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes());
    }
    Ok(())
}
