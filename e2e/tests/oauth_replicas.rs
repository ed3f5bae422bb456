//! What `spec.auth.oauth.state.storage: shared` promises: every replica mounts one
//! ReadWriteMany volume as Conduit's `FASTMCP_HOME`, so a login may be split across replicas
//! with no session affinity. Two replicas (Conduit, that is FastMCP's real `OAuthProxy`, and the
//! sluice-proxy binary, both configured from `sluice-operator render`) stand behind nginx set up
//! as an ingress-nginx controller would be from the rendered Ingress, balancing round robin; the
//! Python MCP SDK's own OAuth client logs in through it. With one state directory the login
//! works although its steps land on both replicas; with a directory per replica (what
//! `ephemeral` is, per pod) the same split login fails.
//!
//! Where the stand-ins differ: the volume is a local directory, not NFS or EFS (atomic rename
//! and close-to-open consistency hold trivially); nginx is configured by hand in the shape
//! ingress-nginx renders for an Ingress (locations, headers, round robin), not by the
//! controller; it reaches the pods' route ports directly, as ingress-nginx reaches endpoints.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod oauth_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use oauth_support::{
    Ports, START, Spec, assert_only_phabricator_tokens, conduit_env, container_env, events, find,
    login, public_url, render, spawn_conduit, spawn_sidecar, start_phabricator,
};
use serde_json::Value;
use sluice_e2e::{Process, free_port, peers};

const PREFIX: &str = "/ai";
const REPLICAS: usize = 2;

/// The paths of a login and its calls under P, as the sidecars see them: registration, the
/// browser's steps (authorize, consent shown and approved, the callback from Phabricator), the
/// code exchange, and the MCP endpoint (the first 401, then the calls).
const LOGIN_PATHS: [&str; 6] = [
    "/ai/register",
    "/ai/authorize",
    "/ai/consent",
    "/ai/auth/callback",
    "/ai/token",
    "/ai/mcp",
];

/// The steps that read what an earlier step wrote into Conduit's OAuth state (the
/// registration, the transaction, the code): a replica that cannot see the other's state
/// fails at the first of them that it serves.
const STATEFUL_PATHS: [&str; 5] = [
    "/ai/register",
    "/ai/authorize",
    "/ai/consent",
    "/ai/auth/callback",
    "/ai/token",
];

/// One request a sidecar served, from its access log.
#[derive(Clone, Debug)]
struct Served {
    timestamp: String,
    method: String,
    path: String,
    status: u64,
    replica: usize,
}

impl std::fmt::Display for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} on replica {}",
            self.method, self.path, self.status, self.replica
        )
    }
}

/// Two replicas of the rendered McpServer behind nginx, with the fake Phabricator.
struct Replicas {
    /// P: nginx's URL with the prefix (the route's publicUrl).
    public: String,
    rendered: Vec<Value>,
    phabricator: Process,
    conduits: Vec<Process>,
    sidecars: Vec<Process>,
    ingress: Ingress,
    /// Dropped last: the processes above keep their files in it.
    _dir: tempfile::TempDir,
}

impl Replicas {
    /// Renders the McpServer with two replicas and its route `public` at `/ai` behind nginx,
    /// and starts everything: with `shared`, `storage: shared` and one state directory that both
    /// Conduits use (the ReadWriteMany volume); without, the default `ephemeral` state (which
    /// the CRD lets two replicas have only with `sessionAffinity: ClientIP`) and a directory of
    /// its own for each Conduit (each pod's `/tmp`).
    fn start(shared: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ingress_port = free_port().unwrap();
        let phab_port = free_port().unwrap();
        let public = public_url(ingress_port, PREFIX);
        let phabricator_url = format!("http://127.0.0.1:{phab_port}");
        let (server, oauth) = if shared {
            ("  replicas: 2\n", "      state:\n        storage: shared\n")
        } else {
            ("  replicas: 2\n  sessionAffinity: ClientIP\n", "")
        };
        let (_, rendered) = render(
            &Spec {
                phabricator: &phabricator_url,
                prefix: PREFIX,
                host: "127.0.0.1",
                public_url: Some(&public),
                server,
                oauth,
                ..Spec::default()
            }
            .manifests(),
        );
        let env = conduit_env(&rendered, &public);
        let mut phabricator = start_phabricator(phab_port, &env);

        let ports = [(); REPLICAS].map(|()| Ports::free());
        let volume = dir.path().join("oauth-state-shared");
        let mut conduits = Vec::new();
        let mut sidecars = Vec::new();
        for (replica, ports) in ports.iter().enumerate() {
            let pod = dir.path().join(format!("pod-{replica}"));
            std::fs::create_dir_all(&pod).unwrap();
            let home = if shared {
                volume.clone()
            } else {
                pod.join("fastmcp")
            };
            conduits.push(spawn_conduit(&env, ports.conduit, &home, &pod));
            sidecars.push(spawn_sidecar(&rendered, *ports, &pod));
        }
        let route_ports: Vec<u16> = ports.iter().map(|p| p.route).collect();
        let ingress = Ingress::start(
            &dir.path().join("ingress"),
            ingress_port,
            find(&rendered, "Ingress", "public"),
            &route_ports,
        );

        phabricator.wait_for_port(phab_port, START).unwrap();
        for ((conduit, sidecar), ports) in conduits.iter_mut().zip(&mut sidecars).zip(&ports) {
            conduit.wait_for_port(ports.conduit, START).unwrap();
            sidecar.wait_for_port(ports.route, START).unwrap();
            sidecar
                .wait_for_http_ok(&format!("http://127.0.0.1:{}/readyz", ports.admin), START)
                .unwrap();
        }
        Replicas {
            public,
            rendered,
            phabricator,
            conduits,
            sidecars,
            ingress,
            _dir: dir,
        }
    }

    /// Every request of the login's paths each sidecar served, in the order served, once the
    /// sidecars have logged as many as nginx did (they write their logs in batches).
    fn served(&self) -> Vec<Served> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut served: Vec<Served> = self
                .sidecars
                .iter()
                .enumerate()
                .flat_map(|(replica, sidecar)| {
                    events(sidecar)
                        .into_iter()
                        .filter(|e| e["target"] == "sluice::access")
                        .filter_map(move |e| {
                            let path = e["path"].as_str()?;
                            LOGIN_PATHS.contains(&path).then(|| Served {
                                timestamp: e["timestamp"].as_str().unwrap_or("").to_owned(),
                                method: e["method"].as_str().unwrap_or("?").to_owned(),
                                path: path.to_owned(),
                                status: e["status"].as_u64().unwrap_or(0),
                                replica,
                            })
                        })
                })
                .collect();
            let nginx = self
                .ingress
                .log()
                .iter()
                .filter(|e| e["path"].as_str().is_some_and(|p| LOGIN_PATHS.contains(&p)))
                .count();
            if served.len() >= nginx || Instant::now() > deadline {
                // Each step waited for the one before it: the times order them.
                served.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
                return served;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the processes said, for assertion messages.
    fn logs(&self) -> String {
        let processes = self
            .conduits
            .iter()
            .chain(&self.sidecars)
            .chain([&self.ingress.process, &self.phabricator]);
        let mut logs: Vec<String> = processes.map(Process::logs).collect();
        logs.push(format!("nginx's access log:\n{:#?}", self.ingress.log()));
        logs.join("\n")
    }
}

/// nginx as an ingress-nginx controller serves the rendered Ingress: one location per path of
/// its rule (a `Prefix` path as `location /p/` and `location = /p`, an `Exact` one as
/// `location = /p`), each sent to one upstream holding every replica's route port, balanced
/// round robin with no affinity, with the headers ingress-nginx sets.
struct Ingress {
    process: Process,
    /// Its access log: one JSON object per request, naming the replica's port that served it.
    access_log: PathBuf,
}

impl Ingress {
    /// Starts nginx on `port` with its config and files in `prefix`.
    fn start(prefix: &Path, port: u16, ingress: &Value, replicas: &[u16]) -> Self {
        std::fs::create_dir_all(prefix).unwrap();
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, ingress_config(prefix, port, ingress, replicas)).unwrap();
        let mut command = Command::new(peers::nginx().unwrap());
        command
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(prefix.join("error.log"));
        let mut process = Process::spawn(&format!("nginx :{port}"), command).unwrap();
        process.wait_for_port(port, START).unwrap();
        Self {
            process,
            access_log: prefix.join("access.log"),
        }
    }

    /// Its access log so far.
    fn log(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// nginx's config for the rendered `ingress` on `port`, in front of the route ports `replicas`,
/// with everything it writes kept under `prefix`.
fn ingress_config(prefix: &Path, port: u16, ingress: &Value, replicas: &[u16]) -> String {
    let p = prefix.display();
    let rules = ingress["spec"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "one rule: {ingress:#}");
    let host = rules[0]["host"].as_str().unwrap();
    let servers: String = replicas
        .iter()
        .map(|port| format!("        server 127.0.0.1:{port};\n"))
        .collect();
    // What ingress-nginx sets on every proxied request (`$best_http_host` is the Host the
    // caller sent): the sidecars must see the public host, which their Host check and the
    // public URL name.
    let proxy = "proxy_pass http://replicas;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffering off;
            proxy_set_header Host $http_host;
            proxy_set_header X-Request-ID $request_id;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Scheme $scheme;
            proxy_set_header X-Scheme $scheme;";
    let mut locations = String::new();
    for path in rules[0]["http"]["paths"].as_array().unwrap() {
        assert_eq!(
            path["backend"]["service"]["name"], "public",
            "the route's own Service: {ingress:#}"
        );
        let at = path["path"].as_str().unwrap();
        let matches = match path["pathType"].as_str().unwrap() {
            "Prefix" => vec![format!("{}/", at.trim_end_matches('/')), format!("= {at}")],
            "Exact" => vec![format!("= {at}")],
            other => panic!("path type {other} in {ingress:#}"),
        };
        for m in matches {
            locations.push_str(&format!(
                "        location {m} {{\n            {proxy}\n        }}\n"
            ));
        }
    }
    format!(
        r#"# One process that is also the only worker: one round-robin counter for every request.
daemon off;
master_process off;
worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/error.log info;
events {{ worker_connections 256; }}
http {{
    log_format replicas escape=json '{{"method":"$request_method","path":"$uri","status":$status,"upstream":"$upstream_addr"}}';
    access_log {p}/access.log replicas;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    # Round robin (nginx's default), no affinity of any kind: what an Ingress without
    # affinity annotations gets.
    upstream replicas {{
{servers}        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name {host};
{locations}    }}
}}
"#
    )
}

/// `served`, one request a line.
fn describe(served: &[Served]) -> String {
    served
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The moments the login moved between replicas from one stateful step to the next: the
/// later step read state the earlier one wrote on the other replica.
fn hand_offs(served: &[Served]) -> Vec<String> {
    let stateful: Vec<&Served> = served
        .iter()
        .filter(|s| STATEFUL_PATHS.contains(&s.path.as_str()))
        .collect();
    stateful
        .windows(2)
        .filter(|pair| pair[0].replica != pair[1].replica)
        .map(|pair| format!("{} → {}", pair[0], pair[1]))
        .collect()
}

/// The user names the calls of a report were answered for.
fn users(report: &Value) -> Vec<String> {
    report["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no calls: {report:#}"))
        .iter()
        .map(|call| {
            call["structured"]["user"]["userName"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect()
}

/// Each sidecar's audit events of calls of `pha_user_whoami`, once there are `expected` in all
/// or 10 s have passed (the sidecars write their logs in batches).
fn audited_calls(replicas: &Replicas, expected: usize) -> Vec<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let audited: Vec<Vec<Value>> = replicas
            .sidecars
            .iter()
            .map(|sidecar| {
                events(sidecar)
                    .into_iter()
                    .filter(|e| e["target"] == "audit" && e["tool"] == "pha_user_whoami")
                    .collect()
            })
            .collect();
        if audited.iter().map(Vec::len).sum::<usize>() >= expected || Instant::now() > deadline {
            return audited;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn alice_logs_in(replicas: &Replicas) -> (Value, bool) {
    login(
        &format!("{}/mcp", replicas.public),
        &[
            "--user",
            "alice",
            "--tool",
            "pha_user_whoami",
            "--calls",
            "3",
        ],
    )
}

#[test]
fn a_login_split_across_two_replicas_works_with_shared_state() {
    let replicas = Replicas::start(true);

    // What the operator renders is what runs here: two replicas, one ReadWriteMany claim
    // mounted as Conduit's FASTMCP_HOME (into Conduit only), no affinity anywhere.
    let rendered = &replicas.rendered;
    let deployment = find(rendered, "Deployment", "phab");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let claim = find(rendered, "PersistentVolumeClaim", "phab-oauth-state-shared");
    assert_eq!(
        claim["spec"]["accessModes"],
        serde_json::json!(["ReadWriteMany"])
    );
    let conduit_home = container_env(rendered, "phab", "conduit");
    assert_eq!(
        conduit_home.get("FASTMCP_HOME").map(String::as_str),
        Some("/var/lib/fastmcp")
    );
    let pod = &deployment["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["persistentVolumeClaim"]["claimName"] == "phab-oauth-state-shared")
        .unwrap_or_else(|| panic!("the claim is a volume of the pod: {pod:#}"));
    for container in pod["containers"].as_array().unwrap() {
        let mounted: Vec<&Value> = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["name"] == volume["name"])
            .collect();
        if container["name"] == "conduit" {
            assert_eq!(mounted.len(), 1, "{container:#}");
            assert_eq!(mounted[0]["mountPath"], "/var/lib/fastmcp");
        } else {
            assert!(
                mounted.is_empty(),
                "only Conduit mounts the state: {container:#}"
            );
        }
    }
    for service in ["phab", "public"] {
        let service = find(rendered, "Service", service);
        assert!(
            service["spec"]["sessionAffinity"].is_null()
                || service["spec"]["sessionAffinity"] == "None",
            "no affinity: {service:#}"
        );
    }

    let started = Instant::now();
    let (report, ok) = alice_logs_in(&replicas);
    assert!(
        ok,
        "the split login failed: {report:#}\n{}",
        replicas.logs()
    );
    assert_eq!(users(&report), ["alice", "alice", "alice"], "{report:#}");
    let login_time = started.elapsed();

    // The login really was split: each replica served some of its stateful steps, and at
    // least once a step read on one replica what the step before it wrote on the other.
    let served = replicas.served();
    let split = describe(&served);
    eprintln!("the login took {login_time:?}; served, in order:\n{split}");
    for replica in 0..REPLICAS {
        let steps: BTreeSet<&str> = served
            .iter()
            .filter(|s| s.replica == replica && STATEFUL_PATHS.contains(&s.path.as_str()))
            .map(|s| s.path.as_str())
            .collect();
        assert!(
            !steps.is_empty(),
            "replica {replica} served none of the login's steps:\n{split}\n{}",
            replicas.logs()
        );
    }
    let every_step: BTreeSet<&str> = served.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        every_step,
        LOGIN_PATHS.into_iter().collect::<BTreeSet<_>>(),
        "every step of the login went through a sidecar:\n{split}"
    );
    let hand_offs = hand_offs(&served);
    assert!(
        !hand_offs.is_empty(),
        "the login's steps were all on one replica:\n{split}"
    );
    eprintln!("hand-offs between replicas:\n{}", hand_offs.join("\n"));
    assert!(
        served.iter().all(|s| s.status < 500),
        "no replica failed a step:\n{split}"
    );

    // Each sidecar learnt who called from its own Conduit, whichever replica's Conduit issued
    // the token: every call is alice's in the audit trail.
    let audited = audited_calls(&replicas, 3);
    eprintln!(
        "calls audited per replica: {:?}",
        audited.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(
        audited.iter().map(Vec::len).sum::<usize>(),
        3,
        "{audited:#?}"
    );
    for call in audited.iter().flatten() {
        assert_eq!(call["identity"], "alice", "{call}");
        assert_eq!(call["decision"], "allowed", "{call}");
    }

    // Phabricator saw only tokens it issued, never one of FastMCP's, on either replica.
    assert_only_phabricator_tokens(&events(&replicas.phabricator));
}

#[test]
fn without_shared_state_the_same_split_login_fails() {
    // Two replicas with ephemeral state are what the CRD allows only with
    // `sessionAffinity: ClientIP`, which the operator puts on the Services. It cannot help
    // behind an Ingress controller: the controller's pods are the Services' clients (and
    // ingress-nginx sends to the endpoints directly, past the Service), so the affinity the
    // spec asks for keeps nobody's login on one pod. The Ingress carries no affinity of its own.
    let replicas = Replicas::start(false);
    let rendered = &replicas.rendered;
    assert_eq!(find(rendered, "Deployment", "phab")["spec"]["replicas"], 2);
    assert!(
        !rendered
            .iter()
            .any(|d| d["kind"] == "PersistentVolumeClaim"),
        "ephemeral state has no claim"
    );
    assert_eq!(
        container_env(rendered, "phab", "conduit")
            .get("FASTMCP_HOME")
            .map(String::as_str),
        Some("/tmp/fastmcp")
    );
    assert_eq!(
        find(rendered, "Service", "public")["spec"]["sessionAffinity"],
        "ClientIP"
    );
    let ingress = find(rendered, "Ingress", "public");
    let annotations = ingress["metadata"]["annotations"]
        .as_object()
        .map(|a| a.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(
        !annotations.iter().any(|a| a.contains("affinity")),
        "{ingress:#}"
    );

    let (report, ok) = alice_logs_in(&replicas);
    let served = replicas.served();
    let split = describe(&served);
    eprintln!("served, in order:\n{split}");
    assert!(
        !ok,
        "a login split across replicas with a state directory each must fail: {report:#}\n{split}"
    );
    let error = report["error"]
        .as_str()
        .unwrap_or_else(|| panic!("the report says why the login failed: {report:#}\n{split}"));
    eprintln!("the login failed: {error}");
    // The login broke at its first step that a replica served after the step before it ran on
    // the other: a registration or a transaction that replica never saw.
    let stateful: Vec<&Served> = served
        .iter()
        .filter(|s| STATEFUL_PATHS.contains(&s.path.as_str()))
        .collect();
    let broke = stateful
        .iter()
        .position(|s| s.status >= 400)
        .unwrap_or_else(|| panic!("a step of the login was refused:\n{split}"));
    assert!(
        broke > 0 && stateful[broke - 1].replica != stateful[broke].replica,
        "the refused step followed one on the other replica:\n{split}"
    );
    assert!(
        error.contains("Client Not Registered") || error.to_lowercase().contains("transaction"),
        "the login failed because replica {} did not know the registration or transaction \
         that replica {} made ({} after {}): {error}\n{split}",
        stateful[broke].replica,
        stateful[broke - 1].replica,
        stateful[broke],
        stateful[broke - 1],
    );
}
