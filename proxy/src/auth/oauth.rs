//! Mode `oauth` (Conduit's OAuth-proxy mode): a bearer is required; validating it stays with
//! Conduit, which issued it. Who the caller is, only Conduit knows as well: the sidecar asks it
//! ([`UpstreamIdentity`]) once the request's body is read, so a refusal carries the request's id.
//! Rules by identity, per-user rate limits and audit then act on the Phabricator user, and the
//! bearer never goes anywhere but to Conduit.

use std::sync::Arc;

use http::HeaderMap;
use sluice_proxy_config::{OAuthAuth, Sessions, WhoamiCache};

use super::credential;
use super::store::Store;
use super::upstream_identity::{Unknown, UpstreamIdentity};
use super::{Counters, Failure, digest};
use crate::forward::Upstream;
use crate::request::Identity;

/// A compiled `oauth` mode.
pub struct OAuth {
    identities: Arc<UpstreamIdentity>,
}

impl OAuth {
    pub fn new(settings: &OAuthAuth, sessions: Sessions, store: &Store) -> Self {
        let max_entries = u64::try_from(WhoamiCache::default().max_entries).unwrap_or(u64::MAX);
        Self {
            identities: UpstreamIdentity::shared(
                store,
                sessions,
                settings.identity_cache_ttl.get(),
                settings.identity_timeout.get(),
                max_entries,
            ),
        }
    }

    /// The bearer's SHA-256: a bearer is present, once, and well-formed. Who it belongs to is
    /// [`OAuth::identify`]'s to say.
    pub fn bearer(headers: &HeaderMap) -> Result<[u8; 32], Failure> {
        let token = credential::bearer(headers)?.ok_or(Failure::Missing)?;
        Ok(digest(token))
    }

    /// The Phabricator user whose bearer `headers` carry, as the upstream names it.
    pub async fn identify(
        &self,
        headers: &HeaderMap,
        upstream: &Upstream,
        counters: &Counters,
    ) -> Result<Identity, Unknown> {
        let token = credential::bearer(headers)
            .ok()
            .flatten()
            .ok_or(Unknown::Unavailable(super::outbound::CallError::Malformed))?;
        self.identities.ask(token, upstream, counters).await
    }

    /// Forgets the identity of a bearer the upstream has just refused.
    pub async fn forget(&self, bearer: &[u8; 32]) {
        self.identities.forget(bearer).await;
    }
}
