//! The JSON log line, built in a buffer of the thread's own and handed to tracing-subscriber's
//! writer in one piece.
//!
//! Every request logs an access line and every `tools/call` an audit line, so formatting is
//! on the request path. tracing-subscriber's own JSON format goes through serde per field and
//! formats the whole timestamp per line; measured in `make bench`, logging then cost a quarter
//! of the proxy's CPU per request. This writes the same objects — `timestamp` (RFC 3339, µs,
//! UTC), `level`, the event's fields in order (`message` among them), `target` — with the
//! date and time of day formatted once per second. Numbers are written as serde_json writes
//! them (itoa, ryu).

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// One JSON object per event, on one line.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // `writer` is dynamically dispatched, and a line is dozens of small writes.
        thread_local!(static LINE: RefCell<String> = const { RefCell::new(String::new()) });
        LINE.with_borrow_mut(|line| {
            line.clear();
            let meta = event.metadata();
            line.push_str("{\"timestamp\":\"");
            write_timestamp(line, SystemTime::now());
            line.push_str("\",\"level\":\"");
            line.push_str(meta.level().as_str());
            line.push('"');
            let mut fields = Fields {
                line,
                result: Ok(()),
            };
            event.record(&mut fields);
            fields.result?;
            line.push_str(",\"target\":");
            write_string(line, meta.target());
            line.push_str("}\n");
            writer.write_str(line)
        })
    }
}

/// Writes each field as `,"name":value`. Only a field's own `Debug` or `Display` can fail.
struct Fields<'a> {
    line: &'a mut String,
    result: fmt::Result,
}

impl Fields<'_> {
    fn key(&mut self, field: &Field) {
        self.line.push(',');
        write_string(self.line, field.name());
        self.line.push(':');
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        write_string(self.line, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.line.push_str(itoa::Buffer::new().format(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.line.push_str(itoa::Buffer::new().format(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            self.line.push_str(ryu::Buffer::new().format_finite(value));
        } else {
            // JSON has no NaN or infinity.
            self.line.push_str("null");
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `message` and `%`/`?` fields: formatted once into a reused buffer, then escaped.
        thread_local!(static TEXT: RefCell<String> = const { RefCell::new(String::new()) });
        TEXT.with_borrow_mut(|text| {
            text.clear();
            match write!(text, "{value:?}") {
                Ok(()) => self.record_str(field, text),
                Err(e) => self.result = Err(e),
            }
        });
    }
}

/// `s` as a JSON string: quotes, backslashes and control characters escaped, and so are the
/// characters that change how a line reads without being seen — C1 controls, the line and
/// paragraph separators (U+2028, U+2029) and the bidirectional marks and overrides (U+200E,
/// U+200F, U+202A-U+202E, U+2066-U+2069) — since log lines carry caller input (a JWT's
/// subject, a tool name). The rest as is.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut plain = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (escape, len) = match b {
            b'"' => (Escape::Text("\\\""), 1),
            b'\\' => (Escape::Text("\\\\"), 1),
            b'\n' => (Escape::Text("\\n"), 1),
            b'\r' => (Escape::Text("\\r"), 1),
            b'\t' => (Escape::Text("\\t"), 1),
            0..0x20 | 0x7f => (Escape::Unicode(u32::from(b)), 1),
            // The lead bytes of U+0080-U+00BF and U+2000-U+2FFF: look at the character.
            0xc2 | 0xe2 => match s[i..].chars().next() {
                Some(c) if is_invisible(c) => (Escape::Unicode(u32::from(c)), c.len_utf8()),
                _ => {
                    i += 1;
                    continue;
                }
            },
            _ => {
                i += 1;
                continue;
            }
        };
        // `i` starts a character, so both slices end on character boundaries.
        out.push_str(&s[plain..i]);
        match escape {
            Escape::Text(text) => out.push_str(text),
            Escape::Unicode(code) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(char::from(HEX[((code >> shift) & 0xf) as usize]));
                }
            }
        }
        i += len;
        plain = i;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

enum Escape {
    Text(&'static str),
    Unicode(u32),
}

/// Characters that change how a line reads without being seen.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{80}'..='\u{9f}'
        | '\u{200e}' | '\u{200f}'
        | '\u{2028}' | '\u{2029}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

/// `now` as `2026-11-22T02:19:48.057011Z`; the part up to the seconds is formatted when the
/// second changes, per thread.
fn write_timestamp(out: &mut String, now: SystemTime) {
    thread_local!(static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) });
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != secs {
            // `2026-11-22T02:19:48Z` without its `Z`.
            *text = humantime::format_rfc3339_seconds(now).to_string();
            text.pop();
            *cached = secs;
        }
        out.push_str(text);
        out.push('.');
        let mut digits = itoa::Buffer::new();
        let micros = digits.format(since.subsec_micros());
        out.extend(std::iter::repeat_n('0', 6 - micros.len()));
        out.push_str(micros);
        out.push('Z');
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn string(s: &str) -> String {
        let mut out = String::new();
        write_string(&mut out, s);
        out
    }

    #[test]
    fn strings_are_json_that_reads_back_as_themselves() {
        for s in [
            "",
            "plain",
            "quote \" and backslash \\",
            "lines\nand\rtabs\t",
            "\u{0}\u{1f}\u{7f} controls",
            "naïve ünïcödé 🦀",
            "x\"y",
            "sub\u{2028}line \u{202e}desrever\u{202c} \u{85}\u{2066}x\u{2069}",
        ] {
            let json = string(s);
            let back: String =
                serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(back, s);
            assert!(!json.contains('\n'), "{json:?} spans lines");
            assert!(!json.chars().any(is_invisible), "{json:?} carries them raw");
        }
        assert_eq!(string("a\u{2028}b\u{202e}"), r#""a\u2028b\u202e""#);
        assert_eq!(string("é\u{1}"), r#""é\u0001""#);
    }

    /// Logs the same events through tracing-subscriber's JSON format and through this one.
    fn both_formats(log: impl Fn()) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = |buffer: &Buffer| -> Vec<serde_json::Value> {
            let bytes = buffer.0.lock().unwrap().clone();
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(|l| {
                    let mut v: serde_json::Value =
                        serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
                    let stamp = v.as_object_mut().unwrap().remove("timestamp");
                    assert!(stamp.is_some_and(|t| t.as_str().is_some_and(|t| t.ends_with('Z'))));
                    v
                })
                .collect()
        };
        let (theirs, ours) = (Buffer::default(), Buffer::default());
        let writer = theirs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, &log);
        let writer = ours.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, &log);
        (lines(&theirs), lines(&ours))
    }

    #[test]
    fn lines_are_the_objects_tracing_subscribers_json_writes() {
        let (theirs, ours) = both_formats(|| {
            let tool = Some("x\"y");
            let none: Option<&str> = None;
            tracing::info!(
                target: "sluice::access",
                entry_point = "bench",
                method = "POST",
                tool,
                none,
                status = 200_u16,
                latency_us = 96_u64,
                delta = -3_i64,
                ok = true,
                share = 0.25_f64,
                big = 1e21_f64,
            );
            tracing::warn!(kind = "connect_refused", error = %"refused\n", "the upstream is {}", "down");
            tracing::error!(debug = ?("a", 1), "plain");
        });
        assert_eq!(ours.len(), 3);
        assert_eq!(ours, theirs);
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds_across_second_changes() {
        let base = UNIX_EPOCH + Duration::from_secs(1_795_313_988);
        for (offset, expected) in [
            (Duration::from_micros(57_011), "2026-11-22T02:19:48.057011Z"),
            (
                Duration::from_micros(999_999),
                "2026-11-22T02:19:48.999999Z",
            ),
            (Duration::from_secs(1), "2026-11-22T02:19:49.000000Z"),
            (Duration::from_secs(86_400), "2026-11-23T02:19:48.000000Z"),
        ] {
            let mut out = String::new();
            write_timestamp(&mut out, base + offset);
            assert_eq!(out, expected);
        }
    }
}
