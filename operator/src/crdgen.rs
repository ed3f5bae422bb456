//! The CRD YAML files generated from the API types.
//!
//! `sluice-operator crds` prints them; `crds/` and `charts/sluice/crds/` hold committed
//! copies, which `operator/tests/crds.rs` keeps equal to what this module generates.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::error::{Error, Result};

/// Folders (relative to the repository root) holding a committed copy of every CRD file.
pub const CRD_DIRS: &[&str] = &["crds", "charts/sluice/crds"];

/// The first lines of every generated file: a reader must know not to edit it by hand.
const HEADER: &str = "# Generated from the API types in crds/src by `sluice-operator crds`: do not edit.\n\
# Regenerate with: SLUICE_UPDATE_GENERATED=1 cargo test -p sluice-operator --test crds\n";

/// One generated CRD: the file it is committed as and its YAML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrdFile {
    /// `<plural>.<group>.yaml`, e.g. `mcpservers.sluice.dev.yaml`.
    pub file_name: String,
    /// The CRD as one YAML document, with the generated-file header.
    pub yaml: String,
}

/// Every Sluice CRD as YAML, in the order of [`sluice_crds::crds`] (servers first).
pub fn crd_files() -> Result<Vec<CrdFile>> {
    sluice_crds::crds().iter().map(crd_file).collect()
}

/// All CRDs as one YAML stream (documents separated by `---`), as `sluice-operator crds`
/// prints it.
pub fn crd_stream() -> Result<String> {
    let documents: Vec<String> = crd_files()?.into_iter().map(|file| file.yaml).collect();
    Ok(documents.join("---\n"))
}

fn crd_file(crd: &CustomResourceDefinition) -> Result<CrdFile> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let body = serde_saphyr::to_string(crd).map_err(|error| Error::CrdYaml {
        name: name.clone(),
        error,
    })?;
    Ok(CrdFile {
        file_name: format!("{name}.yaml"),
        yaml: format!("{HEADER}{body}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_per_crd_named_after_the_crd() {
        let names: Vec<String> = crd_files()
            .unwrap()
            .into_iter()
            .map(|file| file.file_name)
            .collect();
        assert_eq!(
            names,
            ["mcpservers.sluice.dev.yaml", "mcproutes.sluice.dev.yaml"]
        );
    }

    #[test]
    fn the_stream_parses_back_into_the_crds() {
        let stream = crd_stream().unwrap();
        let parsed: Vec<CustomResourceDefinition> = serde_saphyr::from_multiple(&stream).unwrap();
        assert_eq!(parsed, sluice_crds::crds());
    }
}
