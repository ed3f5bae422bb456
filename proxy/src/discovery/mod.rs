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
//!   upstream's root routes. An entry point without a public URL (the server's own in-cluster
//!   one) is known by the URL its caller used: P is the listener's scheme, the request's Host
//!   and the prefix, so an in-cluster client is sent to addresses it can reach;
//! - `discovery` configured (modes `jwt`, `serviceAccount`): the protected-resource document
//!   is written here, naming the configured authorization servers; there is no
//!   authorization-server document (it is the external server's);
//! - otherwise, or without a public URL: nothing.
//!
//! Conduit binds its tokens to one resource, its own `<server URL>/mcp`, and refuses an
//! authorization request naming another (RFC 8707). Every entry point of the server fronts that
//! same resource, so a client of one whose P differs from Conduit's names P/mcp; on the way to
//! Conduit's `/authorize`, exactly that value is replaced with Conduit's own
//! ([`Discovery::authorization_request`]). Any other value reaches Conduit as sent, and is refused there.
//!
//! Every other path with a `.well-known` segment is 404, and so is every ambiguous path (see
//! [`paths`]), so no spelling reaches an upstream path the mapping does not name.

pub mod challenge;
mod document;
pub mod paths;
pub mod public;
mod resource;
mod response;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, header};
use sluice_proxy_config::{Auth, Discovery as Declared, EntryPoint};

pub use paths::{Document, Route, Served};
pub use public::Public;

use crate::body::ResponseBody;
use crate::errors::Refusal;
use crate::forward::Upstream;

/// Where an entry point's documents come from.
#[derive(Clone, Copy, Debug)]
enum Source<'a> {
    /// None: every well-known path is 404.
    Nothing,
    /// The upstream is the authorization server (auth mode `oauth`).
    Upstream,
    /// External authorization servers: the sidecar writes the protected-resource document.
    Local(&'a Declared),
}

/// How a caller reached an entry point: the listener's scheme and the request's Host (checked
/// by `host::check`), for P of an entry point that has no public URL.
#[derive(Clone, Copy, Debug)]
pub struct Via<'r> {
    pub scheme: &'r str,
    pub host: Option<&'r str>,
}

impl<'r> Via<'r> {
    /// How a request with `host` (its Host, or its h2 `:authority`) came over `scheme`.
    pub fn of(scheme: &'r http::HeaderValue, host: Option<&'r http::HeaderValue>) -> Self {
        Self {
            scheme: scheme.to_str().unwrap_or("http"),
            host: host.and_then(|h| h.to_str().ok()),
        }
    }
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
    /// The settings of `ep` for a caller that came `via` (`None`: as configured, without a
    /// caller). In mode `oauth` without a public URL, P is the URL the caller used.
    pub fn new(ep: &'a EntryPoint, via: Option<Via<'_>>) -> Self {
        let public = match (&ep.public_url, &ep.auth, via) {
            (Some(url), _, _) => Public::parse(url),
            (
                None,
                Auth::OAuth(_),
                Some(Via {
                    scheme,
                    host: Some(host),
                }),
            ) => Public::of_caller(scheme, host, &ep.path_prefix),
            _ => None,
        };
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

/// An entry point's OAuth discovery, compiled: its config and the upstream its documents come
/// from.
#[derive(Debug)]
pub struct Discovery {
    ep: EntryPoint,
    upstream: Arc<Upstream>,
    /// How long the upstream may take to answer a metadata request.
    timeout: Duration,
}

impl Discovery {
    pub fn new(ep: &EntryPoint, upstream: Arc<Upstream>, timeout: Duration) -> Self {
        Self {
            ep: ep.clone(),
            upstream,
            timeout,
        }
    }

    /// The request-path step: a discovery document, or a refusal of an ambiguous or unknown
    /// well-known path; `None` lets the request go on. Runs before the Origin check and
    /// authentication: the documents are public.
    pub async fn answer<B>(
        &self,
        req: &Request<B>,
        via: Via<'_>,
    ) -> Option<Result<Response<ResponseBody>, Refusal>> {
        let path = req.uri().path();
        if paths::is_plain(path) {
            return None;
        }
        let site = Site::new(&self.ep, Some(via));
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
        let result = self.serve(&site, document).await;
        if let Err(Refusal::BadMetadata(why)) = &result {
            tracing::warn!(entry_point = %self.ep.name, "cannot serve OAuth metadata: {why}");
        }
        Some(result.map(|doc| response::json(&doc)))
    }

    async fn serve(
        &self,
        site: &Site<'_>,
        document: Document,
    ) -> Result<serde_json::Value, Refusal> {
        let public = site.public.as_ref().ok_or(Refusal::NotFound)?;
        let upstream = &*self.upstream;
        let local = [upstream.authority()];
        let timeout = self.timeout;
        let bad = |e: document::BadDocument| Refusal::BadMetadata(e.to_string());
        match (site.source, document) {
            (Source::Local(d), Document::ProtectedResource) => Ok(
                document::local_protected_resource(public, &d.authorization_servers, &d.scopes),
            ),
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
    pub fn rewrite_challenge(&self, response: &mut Response<ResponseBody>, via: Via<'_>) {
        if !matches!(
            response.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) || !response.headers().contains_key(header::WWW_AUTHENTICATE)
        {
            return;
        }
        let headers = response.headers_mut();
        let rewritten: Vec<http::HeaderValue> = headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|value| self.challenge_for(value, via))
            .collect();
        headers.remove(header::WWW_AUTHENTICATE);
        for value in rewritten {
            headers.append(header::WWW_AUTHENTICATE, value);
        }
    }

    /// One upstream challenge with its `resource_metadata` pointed at the entry point's own
    /// metadata, when the entry point serves one; otherwise as the upstream wrote it.
    fn challenge_for(&self, value: &http::HeaderValue, via: Via<'_>) -> http::HeaderValue {
        let Some(url) = Site::new(&self.ep, Some(via)).resource_metadata_url() else {
            return value.clone();
        };
        value
            .to_str()
            .ok()
            .and_then(|text| challenge::rewrite(text, &url))
            .and_then(|text| http::HeaderValue::from_str(&text).ok())
            .unwrap_or_else(|| value.clone())
    }

    /// The upstream path of a request to Conduit's authorization endpoint, with a `resource`
    /// naming this entry point's MCP endpoint (P/mcp) replaced by Conduit's own, which is the
    /// only one it issues tokens for; every other request's path as it is. See the module docs.
    pub async fn authorization_request(
        &self,
        method: &Method,
        path: PathAndQuery,
        via: Via<'_>,
    ) -> Result<PathAndQuery, Refusal> {
        if method != Method::GET || path.path() != "/authorize" {
            return Ok(path);
        }
        let site = Site::new(&self.ep, Some(via));
        let (Source::Upstream, Some(public)) = (site.source, &site.public) else {
            return Ok(path);
        };
        let Some(query) = path.query() else {
            return Ok(path);
        };
        let Some(asked) = resource::single(query)? else {
            return Ok(path);
        };
        if !resource::same(&asked, &public.resource()) {
            return Ok(path);
        }
        let upstream = &*self.upstream;
        let bad = |e: document::BadDocument| Refusal::BadMetadata(e.to_string());
        let doc = upstream::authorization_server(upstream, self.timeout).await?;
        let (_, upstream_base) =
            document::authorization_server(doc, public, &[upstream.authority()]).map_err(bad)?;
        let own = upstream_base.resource();
        if resource::same(&asked, &own) {
            return Ok(path);
        }
        let query = resource::replace(query, &own);
        format!("{}?{query}", path.path())
            .parse()
            .map_err(|_| Refusal::InvalidRequest("the authorization request cannot be rewritten"))
    }
}
