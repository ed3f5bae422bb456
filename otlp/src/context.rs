//! W3C Trace Context: the ids of a span and the `traceparent` header that carries them.

use std::fmt;

use rand::RngExt;

/// A trace's id: 16 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// A span's id: 8 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

/// Where a span sits: its trace, its own id, and whether the trace is sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

impl TraceId {
    /// A random id, from the thread's CSPRNG (seeded by the OS).
    pub fn random() -> Self {
        loop {
            let id: [u8; 16] = rand::rng().random();
            if id != [0; 16] {
                return Self(id);
            }
        }
    }
}

impl SpanId {
    /// A random id, from the thread's CSPRNG (seeded by the OS).
    pub fn random() -> Self {
        loop {
            let id: [u8; 8] = rand::rng().random();
            if id != [0; 8] {
                return Self(id);
            }
        }
    }
}

impl SpanContext {
    /// The context a `traceparent` header carries; `None` when it is not one this crate may
    /// continue (W3C Trace Context level 1: unknown future versions are read by their first
    /// four fields; all-zero ids and version `ff` are invalid).
    pub fn from_traceparent(value: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(value).ok()?.trim_matches([' ', '\t']);
        let version = s.get(..2)?;
        let version = u8::from_str_radix(version, 16).ok()?;
        if version == 0xff || !s.get(..2)?.bytes().all(is_lower_hex) {
            return None;
        }
        // Version 00 is exactly 55 characters; later versions may append `-…` fields.
        if (version == 0 && s.len() != 55) || (s.len() > 55 && s.as_bytes()[55] != b'-') {
            return None;
        }
        let mut fields = s.get(..55)?.split('-');
        let (_, trace, span, flags) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        let trace_id = TraceId(hex_array(trace)?);
        let span_id = SpanId(hex_array(span)?);
        let [flags] = hex_array::<1>(flags)?;
        if trace_id.0 == [0; 16] || span_id.0 == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The `traceparent` header naming this span as the parent of what follows (written
    /// without the formatting machinery: it is made for every request with tracing on).
    pub fn traceparent(&self) -> [u8; 55] {
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
        write_hex_into(&mut out[3..35], &self.trace_id.0);
        write_hex_into(&mut out[36..52], &self.span_id.0);
        if self.sampled {
            out[54] = b'1';
        }
        out
    }
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

fn hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    let bytes = s.as_bytes();
    if bytes.len() != 2 * N || !bytes.iter().copied().all(is_lower_hex) {
        return None;
    }
    let mut out = [0; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

fn write_hex_into(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// Lower-case hex, as `traceparent` and trace viewers show ids.
impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

/// Lower-case hex, as `traceparent` and trace viewers show ids.
impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn the_specification_example_round_trips() {
        let cx = SpanContext::from_traceparent(EXAMPLE.as_bytes()).unwrap();
        assert!(cx.sampled);
        assert_eq!(
            format!("{:?}", cx.trace_id),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(format!("{:?}", cx.span_id), "b7ad6b7169203331");
        assert_eq!(&cx.traceparent(), EXAMPLE.as_bytes());
        let unsampled = EXAMPLE.replace("-01", "-00");
        assert!(
            !SpanContext::from_traceparent(unsampled.as_bytes())
                .unwrap()
                .sampled
        );
        // Other flags than `sampled` are ignored, not refused.
        let flags = EXAMPLE.replace("-01", "-03");
        assert!(
            SpanContext::from_traceparent(flags.as_bytes())
                .unwrap()
                .sampled
        );
    }

    #[test]
    fn malformed_headers_are_not_continued() {
        for bad in [
            "",
            "00",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c8031zz-b7ad6b7169203331-01",
        ] {
            assert_eq!(SpanContext::from_traceparent(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_first_fields() {
        let later = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-comes-next";
        assert!(SpanContext::from_traceparent(later.as_bytes()).is_some());
        let glued = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x";
        assert_eq!(SpanContext::from_traceparent(glued.as_bytes()), None);
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(TraceId::random(), TraceId::random());
        assert_ne!(SpanId::random(), SpanId::random());
    }
}
