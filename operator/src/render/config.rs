//! The ConfigMap holding the sidecar config.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sluice_proxy_config::ProxyConfig;

use super::context::Context;
use super::names::config_map_name;
use crate::render_error::RenderError;
use crate::translate::CONFIG_FILE;

/// `<server>-sluice-proxy` with the config under `config.yaml`. The sidecar reloads it when
/// the mounted file changes, so it is not part of the pod's restart hash.
pub fn config_map(ctx: &Context<'_>, config: &ProxyConfig) -> Result<ConfigMap, RenderError> {
    let yaml = config.to_yaml().map_err(|e| RenderError::Serialize {
        what: format!("the sidecar config of {}", ctx.key),
        message: e.to_string(),
    })?;
    Ok(ConfigMap {
        metadata: ctx.metadata(&config_map_name(&ctx.key.name)),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_string(), yaml)])),
        ..ConfigMap::default()
    })
}
