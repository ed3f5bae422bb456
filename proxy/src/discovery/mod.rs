//! OAuth discovery for an entry point whose public URL is P (origin + prefix): the metadata
//! documents every compliant client may look for, answered publicly before any other check,
//! and upstream 401 challenges pointed at them.
//!
//! | path (P = `https://h/ai`)                                  | document                   |
//! |------------------------------------------------------------|----------------------------|
//! | `/.well-known/oauth-protected-resource/ai/mcp`             | protected resource (9728)  |
//! | `/.well-known/oauth-protected-resource/ai`                 | protected resource         |
//! | `/.well-known/oauth-protected-resource` (`rootDiscovery`)  | protected resource         |
//! | `/.well-known/oauth-authorization-server/ai`               | authorization server (8414)|
//! | `/.well-known/openid-configuration/ai`                     | authorization server       |
//! | `/ai/.well-known/openid-configuration`                     | authorization server       |
//!
//! At prefix `/` the same list collapses to the root forms. Where the documents come from:
//! - auth mode `oauth`: from the upstream (Conduit's FastMCP OAuth proxy, which serves its
//!   authorization-server metadata only at its root and its protected-resource metadata at
//!   `/.well-known/oauth-protected-resource{its path}/mcp`), rewritten so that `issuer` is P,
//!   `resource` is P/mcp and every endpoint is under P, which the prefix maps back onto the
//!   upstream's root routes;
//! - `discovery` configured (modes `jwt`, `serviceAccount`): the protected-resource document
//!   is written here, naming the configured authorization servers; there is no
//!   authorization-server document (it is the external server's);
//! - otherwise, or without a public URL: nothing.
//!
//! Every other path with a `.well-known` segment is 404, and so is every ambiguous path (see
//! [`paths`]), so no spelling reaches an upstream path the mapping does not name.

mod challenge;
mod document;
pub mod paths;
pub mod public;
mod response;
mod upstream;

use http::{Request, Response, StatusCode, header};
use sluice_proxy_config::{Auth, Discovery, EntryPoint};

pub use paths::{Document, Route, Served};
pub use public::Public;

use crate::body::ResponseBody;
use crate::errors::Refusal;
use crate::state::Entry;

/// Where an entry point's documents come from.
#[derive(Clone, Copy, Debug)]
enum Source<'a> {
    /// None: every well-known path is 404.
    Nothing,
    /// The upstream is the authorization server (auth mode `oauth`).
    Upstream,
    /// External authorization servers: the sidecar writes the protected-resource document.
    Local(&'a Discovery),
}

/// An entry point's discovery settings, read from its config.
#[derive(Clone, Debug)]
pub struct Site<'a> {
    prefix: &'a str,
    public: Option<Public>,
    source: Source<'a>,
    root: bool,
}

impl<'a> Site<'a> {
    /// The settings of `ep`.
    pub fn new(ep: &'a EntryPoint) -> Self {
        let public = ep.public_url.as_deref().and_then(Public::parse);
        let source = match (&ep.discovery, &ep.auth) {
            _ if public.is_none() => Source::Nothing,
            (Some(discovery), _) => Source::Local(discovery),
            (None, Auth::OAuth(_)) => Source::Upstream,
            (None, _) => Source::Nothing,
        };
        Self {
            prefix: ep.path_prefix.trim_end_matches('/'),
            public,
            source,
            root: ep.root_discovery,
        }
    }

    /// The paths it serves documents at.
    pub fn served(&self) -> Served<'a> {
        let any = !matches!(self.source, Source::Nothing);
        Served {
            prefix: self.prefix,
            protected_resource: any,
            root_protected_resource: any && self.root,
            authorization_server: matches!(self.source, Source::Upstream),
        }
    }

    /// Where its protected-resource metadata lives, when it serves one.
    pub fn resource_metadata_url(&self) -> Option<String> {
        match (&self.source, &self.public) {
            (Source::Nothing, _) | (_, None) => None,
            (_, Some(public)) => Some(public.resource_metadata_url()),
        }
    }
}

/// The request-path step: a discovery document, or a refusal of an ambiguous or unknown
/// well-known path; `None` lets the request go on. Runs before the Origin check and
/// authentication: the documents are public.
pub async fn answer<B>(
    req: &Request<B>,
    entry: &Entry,
) -> Option<Result<Response<ResponseBody>, Refusal>> {
    let path = req.uri().path();
    if paths::is_plain(path) {
        return None;
    }
    let config = &entry.snapshot.config;
    let ep = config.entry_point(&entry.name)?;
    let site = Site::new(ep);
    let document = match site.served().route(path) {
        Route::Pass => return None,
        Route::NotFound => return Some(Err(Refusal::NotFound)),
        Route::Serve(document) => document,
    };
    let ask = match response::ask(req.method()) {
        Ok(ask) => ask,
        Err(refusal) => return Some(Err(refusal)),
    };
    if ask == response::Ask::Preflight {
        return Some(Ok(response::preflight(
            req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS),
        )));
    }
    let result = serve(&site, document, entry).await;
    if let Err(Refusal::BadMetadata(why)) = &result {
        tracing::warn!(entry_point = %entry.name, "cannot serve OAuth metadata: {why}");
    }
    Some(result.map(|doc| response::json(&doc)))
}

async fn serve(
    site: &Site<'_>,
    document: Document,
    entry: &Entry,
) -> Result<serde_json::Value, Refusal> {
    let public = site.public.as_ref().ok_or(Refusal::NotFound)?;
    let upstream = &entry.snapshot.upstream;
    let local = [upstream.authority()];
    let timeout = entry.snapshot.config.timeouts.upstream_first_byte.get();
    let bad = |e: document::BadDocument| Refusal::BadMetadata(e.to_string());
    match (site.source, document) {
        (Source::Local(d), Document::ProtectedResource) => Ok(document::local_protected_resource(
            public,
            &d.authorization_servers,
            &d.scopes,
        )),
        (Source::Upstream, Document::AuthorizationServer) => {
            let doc = upstream::authorization_server(upstream, timeout).await?;
            Ok(document::authorization_server(doc, public, &local)
                .map_err(bad)?
                .0)
        }
        (Source::Upstream, Document::ProtectedResource) => {
            // Where the upstream serves it depends on the URL it believes is its own, which
            // its authorization-server metadata names as the issuer.
            let doc = upstream::authorization_server(upstream, timeout).await?;
            let (_, upstream_base) =
                document::authorization_server(doc, public, &local).map_err(bad)?;
            let doc = upstream::protected_resource(upstream, &upstream_base, timeout).await?;
            document::protected_resource(doc, public, &upstream_base, &local).map_err(bad)
        }
        (Source::Nothing, _) | (Source::Local(_), Document::AuthorizationServer) => {
            Err(Refusal::NotFound)
        }
    }
}

/// Points the `resource_metadata` of an upstream 401 or 403 challenge at the entry point's
/// own protected-resource metadata, whatever the upstream wrote there. Entry points that
/// serve no metadata keep the upstream's header.
pub fn rewrite_challenge(response: &mut Response<ResponseBody>, entry: &Entry) {
    if !matches!(
        response.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) || !response.headers().contains_key(header::WWW_AUTHENTICATE)
    {
        return;
    }
    let Some(url) = entry
        .snapshot
        .config
        .entry_point(&entry.name)
        .and_then(|ep| Site::new(ep).resource_metadata_url())
    else {
        return;
    };
    let headers = response.headers_mut();
    let rewritten: Vec<http::HeaderValue> = headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|text| challenge::rewrite(text, &url))
                .and_then(|text| http::HeaderValue::from_str(&text).ok())
                .unwrap_or_else(|| value.clone())
        })
        .collect();
    headers.remove(header::WWW_AUTHENTICATE);
    for value in rewritten {
        headers.append(header::WWW_AUTHENTICATE, value);
    }
}
