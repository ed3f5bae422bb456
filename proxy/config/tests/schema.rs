//! The committed JSON schema of the config file must match the types.

use sluice_proxy_config::ProxyConfig;

const SCHEMA_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.json");

#[test]
fn committed_schema_matches_the_types() {
    let generated = format!(
        "{}\n",
        serde_json::to_string_pretty(&ProxyConfig::json_schema()).expect("schema serialises")
    );
    if std::env::var_os("SLUICE_UPDATE_GENERATED").is_some() {
        std::fs::write(SCHEMA_PATH, &generated).expect("write schema.json");
    }
    let committed = std::fs::read_to_string(SCHEMA_PATH).unwrap_or_default();
    assert!(
        committed == generated,
        "proxy/config/schema.json is out of date; regenerate it with `make generate` \
         (SLUICE_UPDATE_GENERATED=1 cargo test -p sluice-proxy-config --test schema)"
    );
}
