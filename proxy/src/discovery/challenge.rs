//! Upstream `WWW-Authenticate` challenges pointed at the entry point's own metadata: whatever
//! `resource_metadata` the upstream wrote (its own idea of its URL, a root path, plain http),
//! the caller is sent to the document the sidecar serves for P.

use crate::headers::quoted_string;

/// `header` with the value of every `resource_metadata` parameter replaced by `url` (quoted),
/// or `None` when it has none. Other parameters, schemes and challenges are kept byte for byte.
pub fn rewrite(header: &str, url: &str) -> Option<String> {
    let bytes = header.as_bytes();
    let mut out = String::with_capacity(header.len() + url.len());
    let mut copied = 0;
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            // Skip quoted strings: a parameter name inside one is text, not a parameter.
            b'"' => i = skip_quoted(bytes, i),
            _ if is_param_start(bytes, i) => {
                let name_end = i + PARAM.len();
                let mut j = name_end;
                while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t') {
                    j += 1;
                }
                if bytes.get(j) != Some(&b'=') {
                    i = name_end;
                    continue;
                }
                j += 1;
                while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t') {
                    j += 1;
                }
                let value_end = if bytes.get(j) == Some(&b'"') {
                    skip_quoted(bytes, j)
                } else {
                    let mut k = j;
                    while k < bytes.len() && !matches!(bytes[k], b',' | b' ' | b'\t') {
                        k += 1;
                    }
                    k
                };
                out.push_str(&header[copied..name_end]);
                out.push('=');
                out.push_str(&quoted_string(url));
                copied = value_end;
                changed = true;
                i = value_end;
            }
            _ => i += 1,
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&header[copied..]);
    Some(out)
}

const PARAM: &str = "resource_metadata";

/// Whether a `resource_metadata` parameter name starts at `i` (case-insensitive, on a
/// parameter boundary).
fn is_param_start(bytes: &[u8], i: usize) -> bool {
    let end = i + PARAM.len();
    end <= bytes.len()
        && bytes[i..end].eq_ignore_ascii_case(PARAM.as_bytes())
        && (i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b','))
        && bytes
            .get(end)
            .is_none_or(|b| matches!(b, b'=' | b' ' | b'\t'))
}

/// The index after the quoted string opening at `start` (or the end of input if unclosed).
fn skip_quoted(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://h.example/.well-known/oauth-protected-resource/ai/mcp";

    #[test]
    fn the_metadata_url_is_replaced_and_the_rest_kept() {
        let cases = [
            (
                r#"Bearer resource_metadata="http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp""#,
                format!(r#"Bearer resource_metadata="{URL}""#),
            ),
            (
                r#"Bearer error="invalid_token", error_description="expired", resource_metadata="http://x/y""#,
                format!(
                    r#"Bearer error="invalid_token", error_description="expired", resource_metadata="{URL}""#
                ),
            ),
            (
                r#"Bearer RESOURCE_METADATA = http://x/y, scope="a b""#,
                format!(r#"Bearer RESOURCE_METADATA="{URL}", scope="a b""#),
            ),
            (
                r#"Bearer resource_metadata="a\"b",scope="x""#,
                format!(r#"Bearer resource_metadata="{URL}",scope="x""#),
            ),
            (
                r#"Basic realm="x", Bearer resource_metadata="http://x""#,
                format!(r#"Basic realm="x", Bearer resource_metadata="{URL}""#),
            ),
        ];
        for (given, expected) in cases {
            assert_eq!(
                rewrite(given, URL).as_deref(),
                Some(expected.as_str()),
                "{given}"
            );
        }
    }

    #[test]
    fn headers_without_the_parameter_are_left_alone() {
        for header in [
            "Bearer",
            r#"Bearer realm="mcp", error="invalid_token""#,
            r#"Bearer error_description="see resource_metadata=x""#,
            r#"Bearer x_resource_metadata="http://x""#,
            r#"Bearer resource_metadatax="http://x""#,
            "Bearer resource_metadata",
        ] {
            assert_eq!(rewrite(header, URL), None, "{header}");
        }
    }

    #[test]
    fn urls_are_quoted() {
        assert_eq!(
            rewrite("Bearer resource_metadata=x", r#"https://h/a"b"#).as_deref(),
            Some(r#"Bearer resource_metadata="https://h/a\"b""#)
        );
    }
}
