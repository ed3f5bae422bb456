//! Log lines gathered in memory and written to stdout (or, for the audit trail, appended to a
//! file) in batches, by a thread of their own.
//!
//! A line costs the request that logs it a short lock and a copy, never a system call. The
//! first line after a write wakes the writer thread, which lets lines gather for
//! [`GATHER`] and writes them all at once: under load one write carries hundreds of lines,
//! and an idle proxy has an idle writer. (tracing-appender's non-blocking writer wakes its
//! thread for nearly every line and spins on `sched_yield` while it waits: measured, that
//! cost more than the writes it saved.)
//!
//! Nothing is dropped: past [`MAX_PENDING`] bytes (stdout not keeping up) the logging thread
//! writes the backlog itself, as an unbuffered writer would; and [`Flusher`] writes out what
//! is pending when it is dropped, after which lines are written at once.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long lines gather before a write: under load that is hundreds of lines a write, and a
/// reader of the log (`kubectl logs`, a test polling) sees them well within a second. Each
/// batch costs a wake-up of this thread: at 1 ms they cost 4% of the proxy's CPU per request
/// more than at 10 ms (bench-proxy, 16 connections).
const GATHER: Duration = Duration::from_millis(10);

/// Pending bytes past which a logging thread writes the backlog itself.
const MAX_PENDING: usize = 1024 * 1024;

/// Where batches go: stdout, or a buffer in tests.
trait Sink: Send + Sync + 'static {
    fn write_all(&self, bytes: &[u8]);
}

struct Stdout;

impl Sink for Stdout {
    fn write_all(&self, bytes: &[u8]) {
        let mut out = io::stdout().lock();
        // Nowhere left to report a failing stdout: the lines are lost, as with a direct write.
        let _ = out.write_all(bytes).and_then(|()| out.flush());
    }
}

/// Appends to a file, opened anew for each batch: one moved away (rotated) or deleted is
/// created again. A failure is reported on stderr once, until a write succeeds again.
struct AppendFile {
    path: PathBuf,
    failing: AtomicBool,
}

impl AppendFile {
    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)?
            .write_all(bytes)
    }
}

impl Sink for AppendFile {
    fn write_all(&self, bytes: &[u8]) {
        match self.append(bytes) {
            Ok(()) => self.failing.store(false, Ordering::Relaxed),
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    // Not through tracing: this runs inside a log line's write.
                    eprintln!(
                        "cannot append to the audit log {}, its lines are lost until it can: {e}",
                        self.path.display()
                    );
                }
            }
        }
    }
}

/// Hands log lines to the writer thread (a [`MakeWriter`] for tracing-subscriber).
#[derive(Clone)]
pub struct Batched {
    shared: Arc<Shared>,
    writer: Thread,
}

/// Writes out the pending lines and stops the writer thread when dropped.
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    pending: Mutex<Pending>,
    sink: Box<dyn Sink>,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// The writer thread is gone: lines are written as they come.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_out(&self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.sink.write_all(bytes);
        }
    }
}

/// Starts the writer thread of stdout.
pub fn start() -> io::Result<(Batched, Flusher)> {
    start_with(Box::new(Stdout), "sluice-log")
}

/// Starts a writer thread appending to the file at `path`.
pub fn start_file(path: PathBuf) -> io::Result<(Batched, Flusher)> {
    let sink = AppendFile {
        path,
        failing: AtomicBool::new(false),
    };
    start_with(Box::new(sink), "sluice-audit-log")
}

fn start_with(sink: Box<dyn Sink>, name: &str) -> io::Result<(Batched, Flusher)> {
    let shared = Arc::new(Shared {
        pending: Mutex::default(),
        sink,
    });
    let thread = {
        let shared = shared.clone();
        thread::Builder::new()
            .name(name.into())
            .spawn(move || write_batches(&shared))?
    };
    let writer = Batched {
        shared: shared.clone(),
        writer: thread.thread().clone(),
    };
    Ok((
        writer,
        Flusher {
            shared,
            thread: Some(thread),
        },
    ))
}

/// The writer thread: sleeps until a line comes, gathers, writes; ends once closed.
fn write_batches(shared: &Shared) {
    let mut batch = Vec::new();
    loop {
        thread::park();
        if !shared.lock().closed {
            // Woken early only by the close, which writes out the rest below.
            thread::park_timeout(GATHER);
        }
        let closed = {
            let mut pending = shared.lock();
            std::mem::swap(&mut batch, &mut pending.bytes);
            pending.closed
        };
        shared.write_out(&batch);
        batch.clear();
        if closed {
            // Lines since the swap: written under the lock, as later ones are.
            let mut pending = shared.lock();
            shared.write_out(&pending.bytes);
            pending.bytes = Vec::new();
            return;
        }
    }
}

/// One log line's writer.
pub struct LineWriter<'a>(&'a Batched);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let shared = &self.0.shared;
        let mut pending = shared.lock();
        if pending.closed || pending.bytes.len() + buf.len() > MAX_PENDING {
            // Behind or closed: the backlog, then this line, written here and now.
            let backlog = std::mem::take(&mut pending.bytes);
            shared.write_out(&backlog);
            shared.write_out(buf);
            return Ok(buf.len());
        }
        let wake = pending.bytes.is_empty();
        pending.bytes.extend_from_slice(buf);
        drop(pending);
        if wake {
            self.0.writer.unpark();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self)
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![expect(
        clippy::disallowed_types,
        reason = "the writer is a plain thread: the test waits for it on the wall clock"
    )]
    use super::*;
    use std::time::Instant;

    /// A sink that keeps what it is given, and how many writes it took.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Sink for Kept {
        fn write_all(&self, bytes: &[u8]) {
            let mut kept = self.0.lock().unwrap();
            kept.0.extend_from_slice(bytes);
            kept.1 += 1;
        }
    }

    impl Kept {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().0.clone()).unwrap()
        }

        fn writes(&self) -> usize {
            self.0.lock().unwrap().1
        }
    }

    fn line(writer: &Batched, text: &str) {
        writer.make_writer().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn lines_are_written_in_order_and_all_of_them_on_drop() {
        let kept = Kept::default();
        let (writer, flusher) = start_with(Box::new(kept.clone()), "test-log").unwrap();
        let lines: Vec<String> = (0..1000).map(|i| format!("line {i}\n")).collect();
        for l in &lines {
            line(&writer, l);
        }
        drop(flusher);
        assert_eq!(kept.text(), lines.concat());
        // After the close, lines go out at once.
        line(&writer, "late\n");
        assert!(kept.text().ends_with("line 999\nlate\n"));
    }

    #[test]
    fn a_line_reaches_the_sink_without_a_close() {
        let kept = Kept::default();
        let (writer, _flusher) = start_with(Box::new(kept.clone()), "test-log").unwrap();
        line(&writer, "first\n");
        let deadline = Instant::now() + Duration::from_secs(30);
        while kept.text().is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(kept.text(), "first\n");
        // And the next batch too: the writer went back to sleep and woke again.
        line(&writer, "second\n");
        while kept.writes() < 2 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(kept.text(), "first\nsecond\n");
    }

    #[test]
    fn a_backlog_past_the_limit_is_written_by_the_logging_thread() {
        let kept = Kept::default();
        let shared = Arc::new(Shared {
            pending: Mutex::default(),
            sink: Box::new(kept.clone()),
        });
        // No writer thread: only the limit makes lines go out.
        let writer = Batched {
            shared,
            writer: thread::current(),
        };
        let big = "x".repeat(MAX_PENDING / 2 - 1) + "\n";
        line(&writer, &big);
        line(&writer, &big);
        assert_eq!(kept.writes(), 0);
        line(&writer, "over\n");
        assert_eq!(kept.text(), format!("{big}{big}over\n"));
    }

    #[test]
    fn a_file_is_appended_to_and_created_again_when_moved_away() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "before\n").unwrap();
        let (writer, flusher) = start_file(path.clone()).unwrap();
        line(&writer, "one\n");
        drop(flusher);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "before\none\n");
        let rotated = dir.path().join("audit.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        // After the close lines go out at once.
        line(&writer, "two\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "before\none\n");
        // A directory that is not there: the line is lost, said once on stderr, no panic.
        let (writer, _flusher) = start_file(dir.path().join("missing/audit.jsonl")).unwrap();
        line(&writer, "three\n");
    }
}
