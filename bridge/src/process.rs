//! One stdio server process: started with piped stdin, stdout and stderr, fed lines from its
//! session, its stdout read as bounded lines and delivered to the session, its stderr copied to
//! the bridge's stderr (the container log) with the session's tag in front of each line.

use std::io::Write as _;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::jsonrpc::Message;
use crate::lines::{BoundedLines, Line};
use crate::session::Session;

/// Lines that may wait for the process to read its stdin.
const STDIN_QUEUE: usize = 64;
/// How long a process gets to exit once its stdin is closed, before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long the last lines on stdout get to be delivered after the process exited (a child of
/// its own may hold the pipe open).
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// How much of a line that is not a message is logged.
const LOGGED_OF_GARBAGE: usize = 120;
/// Lines that are not messages logged one by one per process; after these, one line in
/// [`GARBAGE_LOG_EVERY`], with the count, so a flood of prints does not flood the log.
const GARBAGE_LOGGED_EACH: u64 = 10;
const GARBAGE_LOG_EVERY: u64 = 10_000;

/// What the server is: the command line, and the most bytes a message may have.
#[derive(Debug)]
pub struct Program {
    pub command: String,
    pub args: Vec<String>,
    pub max_message_bytes: usize,
}

/// A started process.
#[derive(Debug)]
pub struct Running {
    child: Child,
    stdin: mpsc::Sender<Vec<u8>>,
    stdout: JoinHandle<()>,
    started: Instant,
}

/// How a process ended.
#[derive(Debug)]
pub enum Ended {
    /// The session asked it to end.
    Stopped,
    /// It exited by itself (or could not be waited for), after running for `lived`.
    Exited { status: String, lived: Duration },
}

impl Running {
    /// Starts the server for `session`. Its stdout goes to the session from now on; lines for
    /// its stdin go through [`Running::stdin`].
    pub fn start(program: &Program, session: &Arc<Session>) -> std::io::Result<Self> {
        let mut child = Command::new(&program.command)
            .args(&program.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let (stdin, lines) = mpsc::channel(STDIN_QUEUE);
        if let Some(pipe) = child.stdin.take() {
            tokio::spawn(write_stdin(pipe, lines));
        }
        let stdout = match child.stdout.take() {
            Some(pipe) => tokio::spawn(read_stdout(
                BoundedLines::new(BufReader::new(pipe), program.max_message_bytes),
                Arc::clone(session),
            )),
            None => tokio::spawn(async {}),
        };
        if let Some(pipe) = child.stderr.take() {
            tokio::spawn(copy_stderr(
                BoundedLines::new(BufReader::new(pipe), program.max_message_bytes),
                session.tag.clone(),
            ));
        }
        tracing::info!(session = %session.tag, pid = child.id(), "started the MCP server");
        Ok(Self {
            child,
            stdin,
            stdout,
            started: Instant::now(),
        })
    }

    /// The sender of lines for its stdin.
    pub fn stdin(&self) -> mpsc::Sender<Vec<u8>> {
        self.stdin.clone()
    }

    /// Waits until the process exits or `stop` turns true; then closes its stdin, gives it
    /// [`STOP_GRACE`] and kills it.
    pub async fn wait(mut self, mut stop: watch::Receiver<bool>) -> Ended {
        drop(self.stdin);
        let asked = tokio::select! {
            status = self.child.wait() => Err(status),
            _ = stop.wait_for(|stop| *stop) => Ok(()),
        };
        match asked {
            Ok(()) => {
                // The stdin writer ends with the session's sender; the process sees EOF.
                if tokio::time::timeout(STOP_GRACE, self.child.wait())
                    .await
                    .is_err()
                {
                    let _ = self.child.kill().await;
                }
                self.stdout.abort();
                Ended::Stopped
            }
            Err(status) => {
                let lived = self.started.elapsed();
                // What it wrote before exiting is delivered before its requests are failed.
                let _ = tokio::time::timeout(DRAIN_GRACE, &mut self.stdout).await;
                self.stdout.abort();
                Ended::Exited {
                    status: describe(status),
                    lived,
                }
            }
        }
    }
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(e) => format!("could not be waited for: {e}"),
    }
}

async fn write_stdin(mut pipe: ChildStdin, mut lines: mpsc::Receiver<Vec<u8>>) {
    while let Some(mut line) = lines.recv().await {
        line.push(b'\n');
        if pipe.write_all(&line).await.is_err() || pipe.flush().await.is_err() {
            return;
        }
    }
}

async fn read_stdout<R>(mut lines: BoundedLines<R>, session: Arc<Session>)
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    let mut dropped = 0u64;
    loop {
        let (why, length, start) = match lines.next().await {
            Line::End => return,
            Line::Whole(line) if line.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Whole(line) => match Message::parse(&line) {
                Ok(message) => {
                    session.deliver(message).await;
                    continue;
                }
                Err(why) => (why.to_string(), line.len(), line),
            },
            Line::TooLong { start, length } => (
                "longer than the bridge's --max-message-bytes".to_owned(),
                length,
                start,
            ),
        };
        dropped += 1;
        if dropped <= GARBAGE_LOGGED_EACH || dropped.is_multiple_of(GARBAGE_LOG_EVERY) {
            tracing::warn!(
                session = %session.tag,
                length,
                start = %printable(&start),
                dropped_so_far = dropped,
                "the MCP server wrote a line to stdout that is {why}; dropped, not forwarded (stdout is for MCP messages only)"
            );
        }
    }
}

async fn copy_stderr<R>(mut lines: BoundedLines<R>, tag: String)
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    loop {
        let text = match lines.next().await {
            Line::End => return,
            Line::Whole(line) => String::from_utf8_lossy(&line).into_owned(),
            Line::TooLong { start, length } => {
                format!("{}… ({length} bytes)", String::from_utf8_lossy(&start))
            }
        };
        let _ = writeln!(std::io::stderr().lock(), "[session {tag}] {text}");
    }
}

/// The start of a line, safe to put in a log line.
fn printable(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(LOGGED_OF_GARBAGE)]);
    let mut out: String = text.chars().flat_map(char::escape_default).collect();
    if line.len() > LOGGED_OF_GARBAGE {
        out.push('…');
    }
    out
}
