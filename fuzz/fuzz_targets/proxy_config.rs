//! The sidecar config (proxy/config): parsing and validation, then the pure compilation steps
//! the proxy runs on a config it accepted (tool policy, origins, prefix, discovery paths).
//!
//! Beyond "no panic": a config that validates must survive the operator's round trip (it is
//! written with `to_yaml` into the ConfigMap and read back by the sidecar) unchanged.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sluice_proxy::fuzzing::{Origins, Policy, Prefix, Site};
use sluice_proxy_config::ProxyConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = ProxyConfig::from_yaml(text) else {
        return;
    };
    let yaml = config.to_yaml().expect("a valid config serialises");
    let again = ProxyConfig::from_yaml(&yaml)
        .unwrap_or_else(|e| panic!("the written config does not load: {e}\n{yaml}"));
    assert_eq!(config, again, "the round trip changed the config\n{yaml}");
    for ep in &config.entry_points {
        let _ = Policy::new(Arc::from(ep.name.as_str()), &ep.tools);
        let _ = Origins::new(ep.public_url.as_deref(), &ep.allowed_origins);
        let prefix = Prefix::new(&ep.path_prefix);
        let site = Site::new(ep, None);
        let _ = site.resource_metadata_url();
        for (path, _) in site.served().paths() {
            let uri: http::Uri = path
                .parse()
                .unwrap_or_else(|e| panic!("document path {path:?} is no URI path: {e}"));
            let _ = prefix.upstream_path(&uri);
        }
    }
});
