//! docs/api-reference.md must equal what the CRD schemas generate.

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api-reference.md");

#[test]
fn committed_api_reference_matches_the_schemas() {
    let generated = sluice_operator::apidocs::field_reference().unwrap();
    if std::env::var_os("SLUICE_UPDATE_GENERATED").is_some() {
        std::fs::write(PATH, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(PATH).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/api-reference.md is out of date: run `make generate`"
    );
}
