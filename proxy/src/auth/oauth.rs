//! Mode `oauth` (Conduit's OAuth-proxy mode): a bearer is required, but validating it stays
//! with Conduit; the sidecar only names the caller, for rate limits and audit, with
//! `user.whoami` (`access_token`).

use std::sync::Arc;

use http::HeaderMap;
use sluice_proxy_config::{OAuthAuth, PhabricatorApi, WhoamiCache};

use super::credential;
use super::store::Store;
use super::whoami::{Field, Ttls, Verdict, Whoami};
use super::{Counters, Failure, short_id};
use crate::identity::Identity;

/// A compiled `oauth` mode.
pub struct OAuth {
    /// `None` only without `phabricator`, which validation refuses for this mode.
    whoami: Option<Arc<Whoami>>,
}

impl OAuth {
    pub fn new(settings: &OAuthAuth, api: Option<&PhabricatorApi>, store: &Store) -> Self {
        let ttl = settings.identity_cache_ttl.get();
        let ttls = Ttls {
            accepted: ttl,
            refused: ttl,
            max_entries: u64::try_from(WhoamiCache::default().max_entries).unwrap_or(u64::MAX),
        };
        Self {
            whoami: api.map(|api| Whoami::shared(store, api, Field::AccessToken, ttls)),
        }
    }

    /// The Phabricator user the bearer belongs to, or `oauth:<hash prefix>` when Phabricator
    /// does not say.
    ///
    /// A failed `user.whoami` does not refuse the caller: Conduit checks every bearer itself
    /// (its own tokens map to Phabricator's, so Phabricator may not know the bearer at all),
    /// and refusing here would add a second judge that disagrees with the one that counts and
    /// a second point of failure. The fallback still gives each token its own stable name, so
    /// per-caller limits keep working; it is counted in
    /// `sluice_oauth_identity_fallbacks_total`.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        counters: &Counters,
    ) -> Result<Identity, Failure> {
        let token = credential::bearer(headers)?.ok_or(Failure::Missing)?;
        let fallback = || Identity::named(format!("oauth:{}", short_id(token)));
        let Some(whoami) = &self.whoami else {
            return Ok(fallback());
        };
        Ok(match whoami.ask(token, counters).await {
            Ok(Verdict::User(identity)) => identity,
            Ok(Verdict::Refused) => {
                counters.fallback_refused.inc();
                fallback()
            }
            Err(_) => {
                counters.fallback_unavailable.inc();
                fallback()
            }
        })
    }
}
