//! Newline-delimited messages from a stdio server's stdout, each at most a bound: a server that
//! writes a line without end (or a flood without newlines) costs the bridge at most that much
//! memory, and the rest of the line is skipped, not buffered.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// What the next read found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line (without its newline, nor a `\r` before it).
    Whole(Vec<u8>),
    /// A line longer than the bound: its first bytes, and how long it was in all. The reader
    /// skipped the rest.
    TooLong { start: Vec<u8>, length: usize },
    /// The stream ended.
    End,
}

/// Reads lines of at most `max` bytes from `reader`.
#[derive(Debug)]
pub struct BoundedLines<R> {
    reader: R,
    max: usize,
}

/// How much of an over-long line is kept to be logged.
const KEPT_OF_TOO_LONG: usize = 256;

impl<R: AsyncBufRead + Unpin> BoundedLines<R> {
    pub fn new(reader: R, max: usize) -> Self {
        Self { reader, max }
    }

    /// The next line. A last line without a newline counts as a line; an I/O error as the end.
    pub async fn next(&mut self) -> Line {
        let mut line = Vec::new();
        let mut length = 0usize;
        loop {
            let available = match self.reader.fill_buf().await {
                Ok(bytes) => bytes,
                Err(_) => return self.finish(line, length, true),
            };
            if available.is_empty() {
                return self.finish(line, length, true);
            }
            let (chunk, found_newline) = match available.iter().position(|&b| b == b'\n') {
                Some(at) => (&available[..at], true),
                None => (available, false),
            };
            length += chunk.len();
            // Past the bound only the start is kept (for the log); the rest is skipped.
            let keep = if length <= self.max {
                chunk.len()
            } else {
                KEPT_OF_TOO_LONG.saturating_sub(line.len()).min(chunk.len())
            };
            if length > self.max && line.len() > KEPT_OF_TOO_LONG {
                line.truncate(KEPT_OF_TOO_LONG);
            }
            line.extend_from_slice(&chunk[..keep]);
            let consumed = chunk.len() + usize::from(found_newline);
            self.reader.consume(consumed);
            if found_newline {
                return self.finish(line, length, false);
            }
        }
    }

    fn finish(&self, mut line: Vec<u8>, length: usize, at_end: bool) -> Line {
        if at_end && length == 0 {
            return Line::End;
        }
        if length > self.max {
            return Line::TooLong {
                start: line,
                length,
            };
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Line::Whole(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn all(input: &[u8], max: usize, buffer: usize) -> Vec<Line> {
        let mut lines = BoundedLines::new(BufReader::with_capacity(buffer, input), max);
        let mut out = Vec::new();
        loop {
            match lines.next().await {
                Line::End => return out,
                line => out.push(line),
            }
        }
    }

    #[tokio::test]
    async fn splits_lines_across_reads() {
        let lines = all(b"{\"a\":1}\r\n\nlast", 64, 3).await;
        assert_eq!(
            lines,
            vec![
                Line::Whole(b"{\"a\":1}".to_vec()),
                Line::Whole(Vec::new()),
                Line::Whole(b"last".to_vec()),
            ]
        );
    }

    #[tokio::test]
    async fn skips_the_rest_of_a_line_over_the_bound_and_goes_on() {
        let mut input = vec![b'x'; 10_000];
        input.extend_from_slice(b"\nok\n");
        let lines = all(&input, 100, 64).await;
        assert_eq!(lines.len(), 2);
        match &lines[0] {
            Line::TooLong { start, length } => {
                assert_eq!(*length, 10_000);
                assert!(start.len() <= KEPT_OF_TOO_LONG, "kept {}", start.len());
            }
            other => panic!("expected TooLong, got {other:?}"),
        }
        assert_eq!(lines[1], Line::Whole(b"ok".to_vec()));
    }

    #[tokio::test]
    async fn a_line_exactly_at_the_bound_is_whole() {
        let lines = all(b"12345\n", 5, 2).await;
        assert_eq!(lines, vec![Line::Whole(b"12345".to_vec())]);
    }
}
