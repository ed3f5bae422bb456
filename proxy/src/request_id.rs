//! Request ids: what ties a request's access and audit lines to the upstream's log line and to
//! the answer the caller got. A caller's (or its proxy's) `X-Request-Id` is kept when it is
//! well formed; otherwise the request gets one of its own. Either way the upstream receives
//! it, and every answer carries it back, refusals included.

use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use ring::rand::{SecureRandom, SystemRandom};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest caller id kept: room for a UUID, a ULID, a W3C trace id with a span, or an AWS
/// trace header, not for a payload.
const MAX_LEN: usize = 128;

/// Makes ids unique per process without a syscall per request: a random 64-bit prefix drawn
/// at start, then a counter.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        let mut seed = [0u8; 8];
        // Without randomness two restarts may share a prefix; ids stay unique per process.
        let _ = SystemRandom::new().fill(&mut seed);
        Self {
            prefix: u64::from_be_bytes(seed),
            next: AtomicU64::new(0),
        }
    }
}

impl RequestIds {
    /// The request's id: the one in `headers` when it is well formed, else a new one, which
    /// then replaces whatever `headers` held (so the upstream gets exactly one, the same).
    pub fn assign(&self, headers: &mut HeaderMap) -> HeaderValue {
        let mut sent = headers.get_all(&X_REQUEST_ID).iter();
        if let (Some(id), None) = (sent.next(), sent.next())
            && is_well_formed(id.as_bytes())
        {
            return id.clone();
        }
        let id = self.generate();
        headers.insert(X_REQUEST_ID.clone(), id.clone());
        id
    }

    fn generate(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut text = [0u8; 32];
        hex(self.prefix, &mut text[..16]);
        hex(n, &mut text[16..]);
        HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }
}

fn hex(value: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in out.iter_mut().enumerate() {
        let shift = 60 - 4 * i;
        *byte = DIGITS[((value >> shift) & 0xf) as usize];
    }
}

/// 1 to [`MAX_LEN`] characters of letters, digits and `-_.:;=/+`: what request and trace ids
/// are made of, and nothing a log line or a header could be confused by.
fn is_well_formed(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:;=/+".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign(ids: &RequestIds, sent: &[&str]) -> (String, Vec<String>) {
        let mut headers = HeaderMap::new();
        for value in sent {
            headers.append(
                X_REQUEST_ID.clone(),
                HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        let id = ids.assign(&mut headers).to_str().unwrap().to_owned();
        let forwarded = headers
            .get_all(&X_REQUEST_ID)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        (id, forwarded)
    }

    #[test]
    fn a_well_formed_caller_id_is_kept() {
        let ids = RequestIds::default();
        for kept in [
            "0b5d1a7e-7c3f-4b8e-9a51-3f1c2d4e5f60",
            "01JDZ7K4Q8W3R6T9Y2B5N8M1C4",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
            "a",
        ] {
            assert_eq!(
                assign(&ids, &[kept]),
                (kept.to_owned(), vec![kept.to_owned()])
            );
        }
    }

    #[test]
    fn anything_else_is_replaced_by_a_generated_id() {
        let ids = RequestIds::default();
        let long = "x".repeat(129);
        for sent in [
            vec![],
            vec![""],
            vec!["has space"],
            vec!["quote\"d"],
            vec!["tab\there"],
            vec!["comma,separated"],
            vec![long.as_str()],
            vec!["one", "two"],
        ] {
            let (id, forwarded) = assign(&ids, &sent);
            assert_eq!(id.len(), 32, "{sent:?} → {id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
            assert_eq!(forwarded, vec![id], "the upstream gets the new id alone");
        }
    }

    #[test]
    fn generated_ids_differ_and_share_the_process_prefix() {
        let ids = RequestIds::default();
        let (a, _) = assign(&ids, &[]);
        let (b, _) = assign(&ids, &[]);
        assert_ne!(a, b);
        assert_eq!(a[..16], b[..16]);
        assert_eq!(&b[16..], "0000000000000001");
    }
}
