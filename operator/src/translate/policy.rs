//! One entry point's policy (API types) → the sidecar's auth, tool and rate-limit settings.

use sluice_crds::McpServer;
use sluice_crds::policy::{
    self as api, AuthMode, Authentication, JwtAlgorithm, RateLimitKey, RateLimitScope,
};
use sluice_proxy_config::{
    self as config, ApiKeyAuth, Auth, Discovery, Duration, JwtAuth, OAuthAuth, Pattern,
    PatternError, PhabricatorTokenAuth, ServiceAccountAuth, TokenReview, UpstreamToken,
    WhoamiCache,
};

use super::files::CaSource;
use super::{SidecarFiles, Site, invalid_policy, is_oauth};
use crate::key::ObjectKey;
use crate::render_error::RenderError;

const AUTHN: &str = "spec.policy.authentication";

/// The authentication mode an entry point uses: the one written, else what the server's
/// `auth.mode` implies (`phabricatorToken` for `headerToken`, `oauth` for `oauth`).
pub fn effective_mode(server: &McpServer, authentication: &Authentication) -> AuthMode {
    authentication.mode.unwrap_or(if is_oauth(server) {
        AuthMode::OAuth
    } else {
        AuthMode::PhabricatorToken
    })
}

pub(super) fn auth(
    server: &McpServer,
    site: &Site<'_>,
    authentication: &Authentication,
    files: &mut SidecarFiles,
) -> Result<Auth, RenderError> {
    let mode = effective_mode(server, authentication);
    let object = site.object;
    // Without Conduit there is no Phabricator to check a token with, no OAuth proxy, nor a
    // default mode to fall back on. CEL refuses the server's own policy already; a route's
    // is seen only here.
    if server.spec.phabricator.is_none()
        && (authentication.mode.is_none()
            || matches!(mode, AuthMode::PhabricatorToken | AuthMode::OAuth))
    {
        let server_name = server.metadata.name.as_deref().unwrap_or_default();
        return Err(invalid_policy(
            object,
            format!("{AUTHN}.mode"),
            format!(
                "McpServer {server_name} runs a container, not Conduit: the mode must be set, and neither phabricatorToken nor oauth (both need Conduit)"
            ),
        ));
    }
    // Conduit in OAuth mode answers only bearer tokens it issued, and in header-token mode
    // knows no bearer at all: the two must agree, which CEL cannot see across objects.
    if (mode == AuthMode::OAuth) != is_oauth(server) {
        let server_name = server.metadata.name.as_deref().unwrap_or_default();
        let message = if is_oauth(server) {
            format!(
                "McpServer {server_name} runs Conduit in auth.mode oauth, which checks bearer tokens itself: the mode must be oauth (or left unset)"
            )
        } else {
            format!("mode oauth needs McpServer {server_name} to run with auth.mode oauth")
        };
        return Err(invalid_policy(object, format!("{AUTHN}.mode"), message));
    }
    let missing = |field: &str| {
        invalid_policy(
            object,
            format!("{AUTHN}.{field}"),
            format!("needed with mode {field}"),
        )
    };
    Ok(match mode {
        AuthMode::PhabricatorToken => {
            let settings = authentication.phabricator_token.clone().unwrap_or_default();
            let verify = if settings.verify {
                let at = format!("{AUTHN}.phabricatorToken");
                Some(WhoamiCache {
                    cache_ttl: duration(object, &format!("{at}.cacheTtl"), &settings.cache_ttl)?,
                    negative_cache_ttl: duration(
                        object,
                        &format!("{at}.negativeCacheTtl"),
                        &settings.negative_cache_ttl,
                    )?,
                    ..WhoamiCache::default()
                })
            } else {
                None
            };
            Auth::PhabricatorToken(PhabricatorTokenAuth { verify })
        }
        AuthMode::ApiKey => {
            let settings = authentication
                .api_key
                .as_ref()
                .ok_or_else(|| missing("apiKey"))?;
            Auth::ApiKey(ApiKeyAuth {
                keys_dir: files.whole_secret(&settings.secret_ref.name),
            })
        }
        AuthMode::ServiceAccount => {
            let settings = authentication
                .service_account
                .as_ref()
                .ok_or_else(|| missing("serviceAccount"))?;
            let (token_file, ca_file) = files.service_account_token();
            Auth::ServiceAccount(ServiceAccountAuth {
                audience: settings
                    .audience
                    .clone()
                    .unwrap_or_else(|| site.service_url.to_string()),
                allowed: settings.allowed.clone(),
                token_review: TokenReview {
                    token_file,
                    ca_file,
                    ..TokenReview::default()
                },
            })
        }
        AuthMode::Jwt => {
            let settings = authentication.jwt.as_ref().ok_or_else(|| missing("jwt"))?;
            Auth::Jwt(jwt(object, settings, files)?)
        }
        AuthMode::OAuth => {
            let settings = authentication.oauth.clone().unwrap_or_default();
            Auth::OAuth(OAuthAuth {
                identity_cache_ttl: duration(
                    object,
                    &format!("{AUTHN}.oauth.identityCacheTtl"),
                    &settings.identity_cache_ttl,
                )?,
                ..OAuthAuth::default()
            })
        }
        // The certificate is checked in the handshake; the client CA is `tls.clientCa`.
        AuthMode::ClientCertificate => {
            if site.tls.and_then(|t| t.client_ca.as_ref()).is_none() {
                return Err(invalid_policy(
                    object,
                    format!("{AUTHN}.mode"),
                    "mode clientCertificate needs tls.clientCa",
                ));
            }
            Auth::ClientCertificate
        }
        AuthMode::None => Auth::None,
    })
}

fn jwt(
    object: &ObjectKey,
    settings: &api::JwtAuth,
    files: &mut SidecarFiles,
) -> Result<JwtAuth, RenderError> {
    let at = format!("{AUTHN}.jwt");
    let ca_file = match &settings.ca_bundle {
        None => None,
        Some(bundle) => {
            let source = CaSource::of(bundle).ok_or_else(|| {
                invalid_policy(
                    object,
                    format!("{at}.caBundle"),
                    "caBundle needs exactly one of configMapKeyRef or secretKeyRef",
                )
            })?;
            Some(files.ca_bundle(source))
        }
    };
    Ok(JwtAuth {
        issuer: settings.issuer.clone(),
        audiences: settings.audiences.clone(),
        jwks_url: settings.jwks_url.clone(),
        algorithms: settings.algorithms.iter().map(|a| algorithm(*a)).collect(),
        clock_skew: duration(object, &format!("{at}.clockSkew"), &settings.clock_skew)?,
        identity_claim: settings.identity_claim.clone(),
        groups_claim: settings.groups_claim.clone(),
        jwks_min_refresh: Duration::from_secs(30),
        scopes: settings.scopes.clone(),
        ca_file,
    })
}

fn algorithm(algorithm: JwtAlgorithm) -> config::JwtAlgorithm {
    match algorithm {
        JwtAlgorithm::RS256 => config::JwtAlgorithm::RS256,
        JwtAlgorithm::RS384 => config::JwtAlgorithm::RS384,
        JwtAlgorithm::RS512 => config::JwtAlgorithm::RS512,
        JwtAlgorithm::PS256 => config::JwtAlgorithm::PS256,
        JwtAlgorithm::PS384 => config::JwtAlgorithm::PS384,
        JwtAlgorithm::PS512 => config::JwtAlgorithm::PS512,
        JwtAlgorithm::ES256 => config::JwtAlgorithm::ES256,
        JwtAlgorithm::ES384 => config::JwtAlgorithm::ES384,
        JwtAlgorithm::EdDSA => config::JwtAlgorithm::EdDSA,
    }
}

/// The protected-resource document the sidecar serves for a `jwt` entry point that has a
/// public URL: clients learn from it which issuer mints tokens for it.
pub(super) fn discovery(site: &Site<'_>, authentication: &Authentication) -> Option<Discovery> {
    let jwt = authentication.jwt.as_ref()?;
    if authentication.mode != Some(AuthMode::Jwt) || site.public_url.is_none() {
        return None;
    }
    Some(Discovery {
        authorization_servers: vec![jwt.issuer.clone()],
        scopes: jwt.scopes.clone(),
    })
}

pub(super) fn upstream_token(
    server: &McpServer,
    site: &Site<'_>,
    token: &api::UpstreamToken,
    files: &mut SidecarFiles,
) -> Result<UpstreamToken, RenderError> {
    if server.spec.phabricator.is_none() {
        let server_name = server.metadata.name.as_deref().unwrap_or_default();
        return Err(invalid_policy(
            site.object,
            "spec.policy.upstreamToken".into(),
            format!(
                "sends a Phabricator token (X-PHABRICATOR-TOKEN): McpServer {server_name} runs a container, not Conduit"
            ),
        ));
    }
    match (&token.secret_key_ref, &token.per_identity_secret_ref) {
        (Some(one), None) => Ok(UpstreamToken::File(files.secret_key(one))),
        (None, Some(map)) => Ok(UpstreamToken::PerIdentityFile(files.secret_key(map))),
        _ => Err(invalid_policy(
            site.object,
            "spec.policy.upstreamToken".into(),
            "needs exactly one of secretKeyRef or perIdentitySecretRef",
        )),
    }
}

pub(super) fn tools(
    object: &ObjectKey,
    tools: &api::ToolPolicy,
) -> Result<config::ToolPolicy, RenderError> {
    let at = "spec.policy.tools";
    let rules = tools
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let rat = format!("{at}.rules[{i}]");
            Ok(config::ToolRule {
                identities: patterns(
                    object,
                    &format!("{rat}.identities"),
                    &rule.identities,
                    Pattern::uri,
                )?,
                groups: patterns(object, &format!("{rat}.groups"), &rule.groups, Pattern::uri)?,
                allow: patterns(object, &format!("{rat}.allow"), &rule.allow, Pattern::name)?,
                deny: patterns(object, &format!("{rat}.deny"), &rule.deny, Pattern::name)?,
            })
        })
        .collect::<Result<_, RenderError>>()?;
    let filter = |field: &str,
                  filter: &Option<api::NameFilter>,
                  parse: fn(&str) -> Result<Pattern, PatternError>| {
        filter
            .as_ref()
            .map(|f| {
                Ok::<_, RenderError>(config::NameFilter {
                    allow: patterns(object, &format!("{at}.{field}.allow"), &f.allow, parse)?,
                    deny: patterns(object, &format!("{at}.{field}.deny"), &f.deny, parse)?,
                })
            })
            .transpose()
    };
    Ok(config::ToolPolicy {
        allow: patterns(object, &format!("{at}.allow"), &tools.allow, Pattern::name)?,
        deny: patterns(object, &format!("{at}.deny"), &tools.deny, Pattern::name)?,
        rules,
        resources: filter("resources", &tools.resources, Pattern::uri)?,
        prompts: filter("prompts", &tools.prompts, Pattern::name)?,
    })
}

pub(super) fn rate_limits(
    server: &McpServer,
    object: &ObjectKey,
    limits: &[api::RateLimit],
) -> Result<Vec<config::RateLimit>, RenderError> {
    limits
        .iter()
        .enumerate()
        .map(|(i, limit)| {
            let at = format!("spec.policy.rateLimits[{i}]");
            let count = |field: &str, value: i32| {
                u32::try_from(value).ok().filter(|n| *n > 0).ok_or_else(|| {
                    invalid_policy(object, format!("{at}.{field}"), "must be at least 1")
                })
            };
            let requests = count("requests", limit.requests)?;
            let scope = match limit.scope {
                RateLimitScope::Local => config::RateLimitScope::Local,
                RateLimitScope::Global if server.spec.redis.is_none() => {
                    let server_name = server.metadata.name.as_deref().unwrap_or_default();
                    return Err(invalid_policy(
                        object,
                        format!("{at}.scope"),
                        format!("scope global needs spec.redis on McpServer {server_name}"),
                    ));
                }
                RateLimitScope::Global => config::RateLimitScope::Global,
            };
            Ok(config::RateLimit {
                name: limit.name.clone(),
                by: limit
                    .by
                    .iter()
                    .map(|key| match key {
                        RateLimitKey::Identity => config::RateLimitKey::Identity,
                        RateLimitKey::Tool => config::RateLimitKey::Tool,
                        RateLimitKey::ClientAddress => config::RateLimitKey::ClientAddress,
                    })
                    .collect(),
                requests,
                period: duration(object, &format!("{at}.period"), &limit.period)?,
                burst: Some(
                    limit
                        .burst
                        .map(|b| count("burst", b))
                        .transpose()?
                        .unwrap_or(requests),
                ),
                methods: limit.methods.clone(),
                tools: patterns(object, &format!("{at}.tools"), &limit.tools, Pattern::name)?,
                scope,
            })
        })
        .collect()
}

fn patterns<E: std::fmt::Display>(
    object: &ObjectKey,
    at: &str,
    texts: &[String],
    parse: fn(&str) -> Result<Pattern, E>,
) -> Result<Vec<Pattern>, RenderError> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            parse(text).map_err(|e| invalid_policy(object, format!("{at}[{i}]"), e.to_string()))
        })
        .collect()
}

fn duration(object: &ObjectKey, at: &str, text: &str) -> Result<Duration, RenderError> {
    Duration::parse(text).map_err(|message| invalid_policy(object, at.to_string(), message))
}
