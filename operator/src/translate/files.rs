//! The files the sidecar config names, and where in the sidecar they are mounted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};
use sluice_crds::refs::SecretKeyRef;
use sluice_crds::server::CaBundle;

/// Directory of the sidecar config (a ConfigMap mounted whole, so updates reach the file).
pub const CONFIG_DIR: &str = "/etc/sluice/config";
/// The sidecar config file: the ConfigMap's key, inside [`CONFIG_DIR`].
pub const CONFIG_FILE: &str = "config.yaml";
/// Each referenced Secret is mounted at `SECRETS_DIR/<secret name>`.
pub const SECRETS_DIR: &str = "/etc/sluice/secrets";
/// Phabricator's CA bundle, in both containers.
pub const PHABRICATOR_CA_DIR: &str = "/etc/sluice/phabricator-ca";
/// The CA bundle's file name inside [`PHABRICATOR_CA_DIR`].
pub const PHABRICATOR_CA_FILE: &str = "ca.crt";
/// CA bundles the sidecar trusts for its own outbound calls (a JWT issuer's), one file each.
pub const CA_BUNDLES_DIR: &str = "/etc/sluice/ca-bundles";
/// Where the projected ServiceAccount token and the cluster CA go (the sidecar only), for
/// TokenReview: the paths the sidecar's TokenReview settings name.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Which files of one Secret the sidecar needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretFiles {
    /// Every key (an API-key directory: one file per client).
    Whole,
    /// Only these keys; the others stay out of the pod.
    Keys(BTreeSet<String>),
}

/// Everything the sidecar config refers to on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SidecarFiles {
    /// Secrets to mount, by name, each at `SECRETS_DIR/<name>`.
    pub secrets: BTreeMap<String, SecretFiles>,
    /// Phabricator's CA bundle (for `user.whoami`).
    pub phabricator_ca: bool,
    /// A projected ServiceAccount token and the cluster CA, for TokenReview.
    pub service_account_token: bool,
    /// CA bundles, by file name inside [`CA_BUNDLES_DIR`].
    pub ca_bundles: BTreeMap<String, CaSource>,
}

/// Where a CA bundle file comes from: a key of a ConfigMap or of a Secret.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CaSource {
    ConfigMap { name: String, key: String },
    Secret { name: String, key: String },
}

impl CaSource {
    /// Where `bundle` comes from; `None` unless it names exactly one source (which the CRD's
    /// rule requires).
    pub fn of(bundle: &CaBundle) -> Option<Self> {
        match (&bundle.config_map_key_ref, &bundle.secret_key_ref) {
            (Some(r), None) => Some(CaSource::ConfigMap {
                name: r.name.clone(),
                key: r.key.clone(),
            }),
            (None, Some(r)) => Some(CaSource::Secret {
                name: r.name.clone(),
                key: r.key.clone(),
            }),
            _ => None,
        }
    }

    /// The kind and name of the object it comes from.
    pub fn object(&self) -> (&'static str, &str) {
        match self {
            CaSource::ConfigMap { name, .. } => ("ConfigMap", name),
            CaSource::Secret { name, .. } => ("Secret", name),
        }
    }

    /// Its file name: a hash of where it comes from, as names and keys together may be
    /// longer than a file name may be; one file per distinct source.
    fn file_name(&self) -> String {
        let (CaSource::ConfigMap { key, .. } | CaSource::Secret { key, .. }) = self;
        let (kind, name) = self.object();
        let kind = kind.to_ascii_lowercase();
        let hash = Sha256::digest(format!("{kind}/{name}/{key}").as_bytes());
        format!("{kind}-{}.crt", hex::encode(&hash[..8]))
    }
}

impl SidecarFiles {
    /// The path of one Secret key, which is then mounted.
    pub fn secret_key(&mut self, key: &SecretKeyRef) -> PathBuf {
        match self
            .secrets
            .entry(key.name.clone())
            .or_insert_with(|| SecretFiles::Keys(BTreeSet::new()))
        {
            SecretFiles::Whole => {}
            SecretFiles::Keys(keys) => {
                keys.insert(key.key.clone());
            }
        }
        secret_dir(&key.name).join(&key.key)
    }

    /// The directory of a whole Secret, which is then mounted.
    pub fn whole_secret(&mut self, name: &str) -> PathBuf {
        self.secrets.insert(name.to_string(), SecretFiles::Whole);
        secret_dir(name)
    }

    /// The path of Phabricator's CA bundle, which is then mounted.
    pub fn phabricator_ca(&mut self) -> PathBuf {
        self.phabricator_ca = true;
        PathBuf::from(PHABRICATOR_CA_DIR).join(PHABRICATOR_CA_FILE)
    }

    /// The paths of the sidecar's own ServiceAccount token and the cluster CA, which are
    /// then mounted.
    pub fn service_account_token(&mut self) -> (PathBuf, PathBuf) {
        self.service_account_token = true;
        let dir = PathBuf::from(SERVICE_ACCOUNT_DIR);
        (dir.join("token"), dir.join("ca.crt"))
    }

    /// The path of a CA bundle, which is then mounted.
    pub fn ca_bundle(&mut self, source: CaSource) -> PathBuf {
        let file = source.file_name();
        self.ca_bundles.insert(file.clone(), source);
        PathBuf::from(CA_BUNDLES_DIR).join(file)
    }

    /// Adds what `other` needs.
    pub fn merge(&mut self, other: SidecarFiles) {
        for (name, files) in other.secrets {
            match (self.secrets.get_mut(&name), files) {
                (None, files) => {
                    self.secrets.insert(name, files);
                }
                (Some(mine), SecretFiles::Whole) => *mine = SecretFiles::Whole,
                (Some(SecretFiles::Whole), SecretFiles::Keys(_)) => {}
                (Some(SecretFiles::Keys(mine)), SecretFiles::Keys(theirs)) => mine.extend(theirs),
            }
        }
        self.phabricator_ca |= other.phabricator_ca;
        self.service_account_token |= other.service_account_token;
        self.ca_bundles.extend(other.ca_bundles);
    }
}

/// Where Secret `name` is mounted in the sidecar.
pub fn secret_dir(name: &str) -> PathBuf {
    PathBuf::from(SECRETS_DIR).join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, key: &str) -> SecretKeyRef {
        SecretKeyRef {
            name: name.into(),
            key: key.into(),
        }
    }

    #[test]
    fn keys_accumulate_and_a_whole_secret_absorbs_them() {
        let mut files = SidecarFiles::default();
        assert_eq!(
            files.secret_key(&key("bot", "token")),
            PathBuf::from("/etc/sluice/secrets/bot/token")
        );
        let mut other = SidecarFiles::default();
        other.secret_key(&key("bot", "map"));
        other.whole_secret("keys");
        files.merge(other);
        assert_eq!(
            files.secrets["bot"],
            SecretFiles::Keys(BTreeSet::from(["map".to_string(), "token".to_string()]))
        );
        assert_eq!(files.secrets["keys"], SecretFiles::Whole);
        let mut whole = SidecarFiles::default();
        whole.whole_secret("bot");
        files.merge(whole);
        assert_eq!(files.secrets["bot"], SecretFiles::Whole);
        assert_eq!(
            files.secret_key(&key("bot", "x")),
            PathBuf::from("/etc/sluice/secrets/bot/x")
        );
        assert_eq!(files.secrets["bot"], SecretFiles::Whole);
    }
}
