//! One McpServer with its routes → its objects, config, route outcomes and findings.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use sluice_crds::conditions::reasons;
use sluice_crds::{API_VERSION, McpRoute, McpServer};
use sluice_proxy_config::{Auth, ProxyConfig};

use super::context::Context;
use super::names::{Owner, PLACEHOLDER_UID_WARNING, image_version, placeholder_uid};
use super::oauth_state::{self, StateHome};
use super::routes::{self, PlannedRoute};
use super::{
    Notice, Object, Observed, OnChange, Reference, RenderOptions, Rendered, autoscaling, config,
    disruption, expose, monitoring, network, rbac, service, workload,
};
use crate::key::ObjectKey;
use crate::render_error::RenderError;
use crate::translate::{self, CaSource, SidecarFiles};

/// Renders one server with its routes (those whose `spec.serverRef` names it). Routes that
/// cannot be served are rejected (see [`Rendered::routes`]) without failing the server; an
/// error means the server itself cannot be rendered.
pub fn render_server(
    server: &McpServer,
    routes: &[&McpRoute],
    options: &RenderOptions,
    observed: &Observed,
) -> Result<Rendered, RenderError> {
    let key = ObjectKey::of_server(server)?;
    let mut warnings = Vec::new();
    if server.metadata.namespace.is_none() {
        warnings.push(format!(
            "{key} has no metadata.namespace; rendered for namespace default"
        ));
    }
    let uid = server.metadata.uid.clone().unwrap_or_else(|| {
        warnings.push(PLACEHOLDER_UID_WARNING.into());
        placeholder_uid(&key)
    });
    let server_image = match &server.spec.container {
        Some(container) => container.image.clone(),
        None => server
            .spec
            .image
            .clone()
            .unwrap_or_else(|| options.conduit_image.clone()),
    };
    let ctx = Context {
        server,
        owner: Owner {
            api_version: API_VERSION.into(),
            key: key.clone(),
            uid,
        },
        version: image_version(&server_image),
        server_image,
        proxy_image: server
            .spec
            .proxy
            .image
            .clone()
            .unwrap_or_else(|| options.proxy_image.clone()),
        key,
    };
    let key = &ctx.key;

    let service_url = routes::service_url(&key.name, &key.namespace, server.spec.tls.is_some());
    let site = translate::server_site(key, &service_url, server.spec.tls.as_ref());
    let (server_entry_point, mut files) =
        translate::entry_point(server, &site, &server.spec.policy)?;
    let (planned, mut outcomes) = routes::plan(server, key, routes, observed, &mut warnings)?;
    let oauth_public_url = oauth_public_url(server, key, &planned)?;
    if let Some(url) = &oauth_public_url {
        routes::register_callback_of(url, &mut outcomes);
    }
    let discovery = oauth_public_url
        .as_deref()
        .and_then(|url| routes::server_discovery_urls(&service_url, url));
    let state = StateHome::of(server);
    let mut entry_points = vec![server_entry_point];
    for route in &planned {
        entry_points.push(route.entry_point.clone());
        files.merge(route.files.clone());
    }
    let config = translate::proxy_config(server, key, entry_points, &mut files)?;
    let references = references(server, &files);
    let restart_hash = restart_hash(&references, &config, observed);

    let mut objects = vec![Object::ServiceAccount(workload::service_account(&ctx))];
    if files.service_account_token {
        objects.push(Object::ClusterRoleBinding(rbac::token_review_binding(&ctx)));
    }
    objects.push(Object::ConfigMap(config::config_map(&ctx, &config)?));
    objects.push(Object::Service(service::server_service(&ctx)));
    objects.extend(
        planned
            .iter()
            .map(|route| Object::Service(service::route_service(&ctx, route))),
    );
    // Before the Deployment: its pods wait for the claim otherwise.
    if let Some(claim) = oauth_state::persistent_volume_claim(&ctx, &state) {
        objects.push(Object::PersistentVolumeClaim(claim));
    }
    let pod = workload::PodInputs {
        config: &config,
        files: &files,
        oauth_public_url: oauth_public_url.as_deref(),
        state: &state,
        restart_hash: &restart_hash,
    };
    objects.push(Object::Deployment(workload::deployment(&ctx, &pod)));
    if let Some(autoscaling) = &server.spec.autoscaling {
        objects.push(Object::HorizontalPodAutoscaler(
            autoscaling::horizontal_pod_autoscaler(&ctx, autoscaling),
        ));
    }
    // With an autoscaler, by its minimum: a budget over one pod would block node drains.
    if server.spec.fewest_replicas() > 1 {
        objects.push(Object::PodDisruptionBudget(
            disruption::pod_disruption_budget(&ctx),
        ));
    }
    if server.spec.network_policy.enabled {
        objects.push(Object::NetworkPolicy(network::network_policy(
            &ctx, &config, &planned,
        )));
    }
    objects.extend(
        planned
            .iter()
            .filter_map(|route| expose::exposure(&ctx, route)),
    );
    if server.spec.monitoring.service_monitor.enabled {
        objects.push(Object::ServiceMonitor(monitoring::service_monitor(&ctx)));
    }

    Ok(Rendered {
        objects,
        degraded: degraded(server, &config),
        config,
        server_url: routes::mcp_endpoint(&service_url),
        discovery,
        routes: outcomes,
        warnings,
        references,
    })
}

/// The public URL Conduit's OAuth proxy advertises (`PHABRICATOR_MCP_SERVER_URL`):
/// `spec.auth.oauth.publicUrl`, else the one public URL among the server's routes.
fn oauth_public_url(
    server: &McpServer,
    key: &ObjectKey,
    planned: &[PlannedRoute<'_>],
) -> Result<Option<String>, RenderError> {
    if !translate::is_oauth(server) {
        return Ok(None);
    }
    let invalid = |field: &str, message: String| RenderError::InvalidSpec {
        object: key.clone(),
        field: field.into(),
        message,
    };
    let Some(oauth) = &server.spec.auth.oauth else {
        return Err(invalid(
            "spec.auth.oauth",
            "needed with auth.mode oauth".into(),
        ));
    };
    if let Some(url) = &oauth.public_url {
        return Ok(Some(url.clone()));
    }
    let mut by_url: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for route in planned {
        if let Some(url) = &route.accepted.public_url {
            by_url.entry(url).or_default().push(&route.key.name);
        }
    }
    let mut urls = by_url.iter();
    match (urls.next(), urls.next()) {
        (Some((url, _)), None) => Ok(Some(url.to_string())),
        (None, _) => Err(invalid(
            "spec.auth.oauth.publicUrl",
            "Conduit's OAuth mode needs the public URL clients use: set spec.auth.oauth.publicUrl, or expose one McpRoute of this server".into(),
        )),
        (Some(_), Some(_)) => {
            let listed: Vec<String> = by_url
                .iter()
                .map(|(url, routes)| format!("{url} (McpRoute {})", routes.join(", ")))
                .collect();
            Err(invalid(
                "spec.auth.oauth.publicUrl",
                format!(
                    "the server's routes have different public URLs ({}); set spec.auth.oauth.publicUrl to the one Conduit's OAuth proxy should advertise",
                    listed.join("; ")
                ),
            ))
        }
    }
}

/// Why the server works, but not as it should.
fn degraded(server: &McpServer, config: &ProxyConfig) -> Vec<Notice> {
    let mut notices = Vec::new();
    if server
        .spec
        .phabricator
        .as_ref()
        .is_some_and(|p| p.insecure_skip_verify)
    {
        notices.push(Notice {
            reason: reasons::INSECURE,
            message: "spec.phabricator.insecureSkipVerify is set: Phabricator's TLS certificate is not verified; trust its CA with spec.phabricator.caBundle instead".into(),
        });
    }
    for entry_point in &config.entry_points {
        if matches!(entry_point.auth, Auth::None) {
            notices.push(Notice {
                reason: reasons::UNAUTHENTICATED,
                message: format!(
                    "entry point {} accepts callers without authentication (policy.authentication.mode none)",
                    entry_point.name
                ),
            });
        }
    }
    notices
}

/// The Secrets and ConfigMaps the objects refer to. The server reads its environment (and
/// Conduit its CA bundle) only at start (a rollout), and so does the sidecar its trace
/// export's headers; the sidecar re-reads its other mounted files (a reload).
fn references(server: &McpServer, files: &SidecarFiles) -> Vec<Reference> {
    let mut references = Vec::new();
    let mut add = |kind, name: &str, on_change| {
        references.push(Reference {
            kind,
            name: name.to_string(),
            on_change,
        });
    };
    if let Some(oauth) = server
        .spec
        .auth
        .oauth
        .as_ref()
        .filter(|_| translate::is_oauth(server))
    {
        add("Secret", &oauth.client_secret_ref.name, OnChange::Rollout);
    }
    // A `container` server's environment. One marked optional is left out: the pods start
    // without it, so its absence is no fault to report (nor is its arrival a rollout).
    if let Some(container) = &server.spec.container {
        let required = |optional: Option<bool>| optional != Some(true);
        for source in container.env.iter().filter_map(|e| e.value_from.as_ref()) {
            if let Some(r) = source
                .secret_key_ref
                .as_ref()
                .filter(|r| required(r.optional))
            {
                add("Secret", &r.name, OnChange::Rollout);
            }
            if let Some(r) = source
                .config_map_key_ref
                .as_ref()
                .filter(|r| required(r.optional))
            {
                add("ConfigMap", &r.name, OnChange::Rollout);
            }
        }
        for source in &container.env_from {
            if let Some(r) = source.secret_ref.as_ref().filter(|r| required(r.optional)) {
                add("Secret", &r.name, OnChange::Rollout);
            }
            if let Some(r) = source
                .config_map_ref
                .as_ref()
                .filter(|r| required(r.optional))
            {
                add("ConfigMap", &r.name, OnChange::Rollout);
            }
        }
    }
    // Read only at start: Conduit's CA for Phabricator, the sidecar's trace export headers
    // and the export's CA.
    let tracing = server.spec.proxy.tracing.as_ref();
    let read_at_start = [
        server
            .spec
            .phabricator
            .as_ref()
            .and_then(|p| p.ca_bundle.as_ref()),
        tracing.and_then(|t| t.ca_bundle.as_ref()),
    ];
    for source in read_at_start.into_iter().flatten().filter_map(CaSource::of) {
        let (kind, name) = source.object();
        add(kind, name, OnChange::Rollout);
    }
    if let Some(secret) = tracing.and_then(|t| t.headers_secret_ref.as_ref()) {
        add("Secret", &secret.name, OnChange::Rollout);
    }
    // A Secret also read at start keeps `Rollout`: it sorts first, and `dedup` keeps the first.
    for name in files.secrets.keys() {
        add("Secret", name, OnChange::Reload);
    }
    for (kind, name) in files.ca_bundles.values().map(CaSource::object) {
        add(kind, name, OnChange::Reload);
    }
    references.sort();
    references.dedup_by(|later, earlier| later.kind == earlier.kind && later.name == earlier.name);
    references
}

/// A hash of what needs a rollout to take effect: the Secrets and ConfigMaps read at start,
/// with their observed versions, and the sidecar config's tracing section, which the sidecar
/// reads only at start. The rest of the config is not in it: it reloads live.
fn restart_hash(references: &[Reference], config: &ProxyConfig, observed: &Observed) -> String {
    let mut hasher = Sha256::new();
    // Only when present: servers without traces keep the hash they had before the field.
    if let Some(tracing) = &config.tracing {
        let tracing = serde_json::to_string(tracing).unwrap_or_default();
        hasher.update(format!("tracing={tracing}\n"));
    }
    for reference in references
        .iter()
        .filter(|r| r.on_change == OnChange::Rollout)
    {
        let versions = match reference.kind {
            "Secret" => &observed.secret_versions,
            _ => &observed.config_map_versions,
        };
        let version = versions
            .get(&reference.name)
            .map(String::as_str)
            .unwrap_or_default();
        hasher.update(format!("{}/{}={version}\n", reference.kind, reference.name));
    }
    hex::encode(&hasher.finalize()[..8])
}
