//! CIDRs as `trustedProxies` writes them: `10.0.0.0/8`, `fd00::/8`.
//!
//! The type and its containment test are `ipnet`'s: already in the tree (kube-cel's `cidr()`
//! uses it) and well kept. The text is read here, though: ipnet's parser is an old copy of
//! std's and takes `010.0.0.0/8` (leading zeros, read by some as octal) where std, Go's
//! `netip` and so Kubernetes' `cidr()` refuse it; a CIDR the API server refuses must not mean
//! something here.

use std::net::IpAddr;

pub use ipnet::IpNet;

/// Parses `text` as an IPv4 or IPv6 CIDR: an address as std reads it, `/`, and a prefix
/// length in plain decimal; nothing else. Host bits may be set (`10.0.0.1/8` is
/// `10.0.0.0/8`), as Kubernetes' `cidr()` allows.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let refused = || {
        format!(
            "{text:?} is not a CIDR: write an address and a prefix length, e.g. 10.0.0.0/8 or fd00::/8"
        )
    };
    let (address, length) = text.split_once('/').ok_or_else(refused)?;
    let address: IpAddr = address.parse().map_err(|_| refused())?;
    let plain_decimal = (1..=3).contains(&length.len())
        && length.bytes().all(|b| b.is_ascii_digit())
        && (length == "0" || !length.starts_with('0'));
    let length: u8 = plain_decimal
        .then(|| length.parse().ok())
        .flatten()
        .ok_or_else(refused)?;
    IpNet::new(address, length)
        .map(|net| net.trunc())
        .map_err(|_| refused())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_of_both_families_parse_and_anything_else_is_refused() {
        assert_eq!(parse_cidr("10.0.0.1/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("fd00::/8").unwrap().to_string(), "fd00::/8");
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
        assert_eq!(
            parse_cidr("::ffff:10.0.0.0/104").unwrap().to_string(),
            "::ffff:10.0.0.0/104"
        );
        for bad in [
            "",
            "10.0.0.1",
            "10.0.0.0/33",
            "fd00::/129",
            "010.0.0.0/8",
            "10.0.0.0/8 ",
            "fe80::1%eth0/64",
            "[fd00::]/8",
            "10.0.0.0/08",
            "10.0.0.0/+8",
            "10.0.0.0/",
            "/8",
            "10.0.0.0/8/8",
        ] {
            let error = parse_cidr(bad).unwrap_err();
            assert!(error.contains("is not a CIDR"), "{bad}: {error}");
        }
    }
}
