//! `sluice-operator render` from YAML (operator/src/manifest, admission, render): the whole
//! offline path a user's manifest takes, exactly as the CLI runs it.
//!
//! Beyond "no panic": every sidecar config the operator renders must be one the sidecar
//! accepts, or a manifest the API server admits would crash-loop its pods.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_operator::admission::Admission;
use sluice_operator::manifest::Input;
use sluice_operator::render::{Object, RenderOptions, to_yaml_stream};
use sluice_operator::translate::CONFIG_FILE;
use sluice_proxy_config::ProxyConfig;

fn admission() -> &'static Admission {
    static ADMISSION: OnceLock<Admission> = OnceLock::new();
    ADMISSION.get_or_init(|| Admission::new().expect("the CRD schemas compile"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(admitted) = admission().load(&[Input::new("fuzz.yaml", text)], "default") else {
        return;
    };
    let Ok(output) = admitted.render(&RenderOptions::default()) else {
        return;
    };
    to_yaml_stream(&output.objects).expect("rendered objects serialise");
    for object in &output.objects {
        if let Object::ConfigMap(map) = object {
            let yaml = &map.data.as_ref().expect("the config map has data")[CONFIG_FILE];
            if let Err(e) = ProxyConfig::from_yaml(yaml) {
                panic!("the sidecar refuses the rendered config: {e}\n{yaml}");
            }
        }
    }
});
