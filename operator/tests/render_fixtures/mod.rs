//! Builders for McpServers and McpRoutes, and helpers that render them and read the YAML back.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the fixtures"
)]

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sluice_crds::{McpRoute, McpServer};
use sluice_operator::render::{self, Output, RenderOptions};
use sluice_proxy_config::ProxyConfig;

/// The namespace fixtures live in.
pub const NAMESPACE: &str = "tools";

/// Builds an McpServer from the smallest valid spec up. Fields are set through the same JSON
/// a user writes, so API defaults apply exactly as they would to a manifest.
#[derive(Clone, Debug)]
pub struct ServerBuilder {
    object: Value,
}

impl ServerBuilder {
    /// `name` in [`NAMESPACE`], pointing at `https://phabricator.example.com`.
    pub fn new(name: &str) -> Self {
        Self {
            object: json!({
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "McpServer",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"phabricator": {"url": "https://phabricator.example.com"}},
            }),
        }
    }

    /// `name` in [`NAMESPACE`] running `image` on `port` instead of Conduit (`spec.container`),
    /// its own entry point open to every caller (a container server has no default mode).
    pub fn container(name: &str, image: &str, port: u16) -> Self {
        Self {
            object: json!({
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "McpServer",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {
                    "container": {"image": image, "port": port},
                    "policy": {"authentication": {"mode": "none"}},
                },
            }),
        }
    }

    /// `name` in [`NAMESPACE`] running `image`'s command as a stdio server behind the bridge
    /// (`spec.container.stdio`, its defaults, stateful sessions), open to every caller. Its
    /// `container.command` is left to the test (the API requires one).
    pub fn stdio(name: &str, image: &str) -> Self {
        Self {
            object: json!({
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "McpServer",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {
                    "container": {"image": image, "stdio": {}},
                    "sessions": "stateful",
                    "policy": {"authentication": {"mode": "none"}},
                },
            }),
        }
    }

    /// Sets `spec.<path>` (dot-separated) to `value`.
    pub fn set(mut self, path: &str, value: Value) -> Self {
        set(&mut self.object["spec"], path, value);
        self
    }

    /// Sets `metadata.<path>` to `value`.
    pub fn meta(mut self, path: &str, value: Value) -> Self {
        set(&mut self.object["metadata"], path, value);
        self
    }

    /// Conduit in OAuth mode with the client secret in Secret `secret` key `client-secret`.
    pub fn oauth(self, secret: &str, public_url: Option<&str>) -> Self {
        let mut oauth = json!({
            "clientId": "PHID-OASC-abcdefghijklmnopqrst",
            "clientSecretRef": {"name": secret, "key": "client-secret"},
            "scopes": ["maniphest", "file", "user"],
        });
        if let Some(url) = public_url {
            oauth["publicUrl"] = json!(url);
        }
        self.set("auth", json!({"mode": "oauth", "oauth": oauth}))
    }

    /// The McpServer.
    pub fn build(self) -> McpServer {
        serde_json::from_value(self.object).expect("the fixture is a valid McpServer")
    }
}

/// Builds an McpRoute the same way.
#[derive(Clone, Debug)]
pub struct RouteBuilder {
    object: Value,
}

impl RouteBuilder {
    /// Route `name` onto server `server`, in-cluster only, at `/`.
    pub fn new(name: &str, server: &str) -> Self {
        Self {
            object: json!({
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "McpRoute",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"serverRef": {"name": server}},
            }),
        }
    }

    /// Sets `spec.<path>` to `value`.
    pub fn set(mut self, path: &str, value: Value) -> Self {
        set(&mut self.object["spec"], path, value);
        self
    }

    /// Exposed by an Ingress on `host` at `prefix`.
    pub fn ingress(self, host: &str, prefix: &str) -> Self {
        self.set("hostnames", json!([host]))
            .set("pathPrefix", json!(prefix))
            .set(
                "expose",
                json!({"ingress": {"className": "nginx", "tlsSecretName": "tls"}}),
            )
    }

    /// Exposed by an HTTPRoute on `host` at `prefix`.
    pub fn http_route(self, host: &str, prefix: &str) -> Self {
        self.set("hostnames", json!([host]))
            .set("pathPrefix", json!(prefix))
            .set(
                "expose",
                json!({"httpRoute": {"parentRefs": [{"name": "public", "namespace": "gateways"}]}}),
            )
    }

    /// `status.listenerPort`, as a live route would carry it.
    pub fn status_port(mut self, port: u16) -> Self {
        self.object["status"] = json!({"listenerPort": port});
        self
    }

    /// The McpRoute.
    pub fn build(self) -> McpRoute {
        serde_json::from_value(self.object).expect("the fixture is a valid McpRoute")
    }
}

fn set(target: &mut Value, path: &str, value: Value) {
    let mut node = target;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            node[part] = value;
            return;
        }
        if node.get(part).is_none() {
            node[part] = json!({});
        }
        node = &mut node[part];
    }
}

/// Renders offline with the default images. Every sidecar config in the output must pass
/// the sidecar's own loader (parse and validation).
pub fn render(servers: &[McpServer], routes: &[McpRoute]) -> Output {
    let output = render::render_all(servers, routes, &RenderOptions::default())
        .expect("the fixtures render");
    for object in &output.objects {
        if let render::Object::ConfigMap(map) = object {
            let text = map
                .data
                .as_ref()
                .and_then(|d| d.get("config.yaml"))
                .expect("config.yaml");
            if let Err(e) = ProxyConfig::from_yaml(text) {
                panic!("{}: {e}", object.describe());
            }
        }
    }
    output
}

/// The YAML stream of the offline render.
pub fn yaml(servers: &[McpServer], routes: &[McpRoute]) -> String {
    render::to_yaml_stream(&render(servers, routes).objects).expect("the objects serialise")
}

/// Every document of a YAML stream, as JSON values.
pub fn documents(stream: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(stream).expect("the stream parses back")
}

/// Renders, writes YAML and reads it back: what a user or `kubectl` would see.
pub fn rendered_documents(servers: &[McpServer], routes: &[McpRoute]) -> Vec<Value> {
    documents(&yaml(servers, routes))
}

/// The documents of one kind.
pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one document of `kind` named `name`, typed.
pub fn find<T: DeserializeOwned>(docs: &[Value], kind: &str, name: &str) -> T {
    let doc = docs
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {docs:#?}"));
    serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{kind} {name}: {e}"))
}

/// Whether a document of `kind` named `name` exists.
pub fn has(docs: &[Value], kind: &str, name: &str) -> bool {
    docs.iter()
        .any(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

/// The Deployment of server `name`.
pub fn deployment(docs: &[Value], name: &str) -> Deployment {
    find(docs, "Deployment", name)
}

/// Its pod spec.
pub fn pod_of(docs: &[Value], name: &str) -> PodSpec {
    deployment(docs, name)
        .spec
        .and_then(|s| s.template.spec)
        .expect("a pod spec")
}

/// A container of a pod.
pub fn container<'a>(pod: &'a PodSpec, name: &str) -> &'a Container {
    pod.containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// The value of env variable `name` in a container (None when absent or from a reference).
pub fn env<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

/// The sidecar config in server `name`'s ConfigMap, parsed and validated by the sidecar's
/// own loader.
pub fn proxy_config(docs: &[Value], name: &str) -> ProxyConfig {
    let map: ConfigMap = find(docs, "ConfigMap", &format!("{name}-sluice-proxy"));
    let text = map
        .data
        .as_ref()
        .and_then(|d| d.get("config.yaml"))
        .expect("config.yaml key");
    ProxyConfig::from_yaml(text).unwrap_or_else(|e| panic!("config of {name}: {e}\n{text}"))
}

/// A Service by name.
pub fn service(docs: &[Value], name: &str) -> Service {
    find(docs, "Service", name)
}

/// An Ingress by name.
pub fn ingress(docs: &[Value], name: &str) -> Ingress {
    find(docs, "Ingress", name)
}

/// A NetworkPolicy by name.
pub fn network_policy(docs: &[Value], name: &str) -> NetworkPolicy {
    find(docs, "NetworkPolicy", name)
}

/// `render_server` as the controller calls it, for one server and its routes.
pub fn render_server(
    server: &McpServer,
    routes: &[McpRoute],
    observed: &render::Observed,
) -> render::Rendered {
    let routes: Vec<&McpRoute> = routes.iter().collect();
    render::render_server(server, &routes, &RenderOptions::default(), observed)
        .expect("the server renders")
}

/// The YAML of some objects, read back.
pub fn objects_documents(objects: &[render::Object]) -> Vec<Value> {
    documents(&render::to_yaml_stream(objects).expect("the objects serialise"))
}

/// The error of an offline render that must fail.
pub fn render_error(servers: &[McpServer], routes: &[McpRoute]) -> String {
    match render::render_all(servers, routes, &RenderOptions::default()) {
        Ok(_) => panic!("the render should have failed"),
        Err(e) => e.to_string(),
    }
}
