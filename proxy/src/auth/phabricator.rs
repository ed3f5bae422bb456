//! Mode `phabricatorToken`: the caller's own Phabricator API token in `X-PHABRICATOR-TOKEN`,
//! well-formed, and optionally confirmed by `user.whoami`.

use std::sync::Arc;

use http::HeaderMap;
use sluice_proxy_config::{PhabricatorApi, PhabricatorTokenAuth};

use super::credential::{self, X_PHABRICATOR_TOKEN};
use super::outbound::CallError;
use super::store::Store;
use super::whoami::{Ttls, Verdict, Whoami};
use super::{Counters, Failure, short_id};
use crate::request::Identity;

/// A compiled `phabricatorToken` mode.
pub struct PhabricatorToken {
    whoami: Option<Arc<Whoami>>,
}

impl PhabricatorToken {
    pub fn new(
        settings: &PhabricatorTokenAuth,
        api: Option<&PhabricatorApi>,
        store: &Store,
    ) -> Self {
        // Validation requires `phabricator` whenever `verify` is set.
        let whoami = settings.verify.as_ref().zip(api).map(|(cache, api)| {
            let ttls = Ttls {
                accepted: cache.cache_ttl.get(),
                refused: cache.negative_cache_ttl.get(),
                max_entries: u64::try_from(cache.max_entries).unwrap_or(u64::MAX),
            };
            Whoami::shared(store, api, ttls)
        });
        Self { whoami }
    }

    /// The Phabricator user (verified), or `phabricator:<hash prefix>` (form checked only: the
    /// token's own name, stable for rate limits, and no secret).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        counters: &Counters,
    ) -> Result<Identity, Failure> {
        let token = credential::token(headers, &X_PHABRICATOR_TOKEN)?.ok_or(Failure::Missing)?;
        if !credential::is_phabricator_token(token) {
            return Err(Failure::Malformed);
        }
        let Some(whoami) = &self.whoami else {
            return Ok(Identity::named(format!("phabricator:{}", short_id(token))));
        };
        match whoami.ask(token, counters).await {
            Ok(Verdict::User(identity)) => Ok(identity),
            Ok(Verdict::Refused) => Err(Failure::Invalid),
            Err(CallError::Throttled) => Err(Failure::Throttled),
            // Unverified callers stay out while Phabricator cannot answer.
            Err(_) => Err(Failure::Unavailable),
        }
    }
}
