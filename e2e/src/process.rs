//! Processes a test starts: a guard that owns one child (logs in files, killed on drop, logs shown
//! when the test fails) and [`run`], which runs a short command to completion under a deadline.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use crate::Result;
use crate::wait::{self, Probe};

/// Lines of each log shown when a test fails (the files themselves are kept whole).
const LOG_TAIL_LINES: usize = 150;

/// Set to show every process's logs when it is dropped, even when the test passed.
pub const SHOW_LOGS_ENV: &str = "SLUICE_E2E_SHOW_LOGS";

/// A signal a test may send to a process it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: graceful shutdown.
    Term,
    /// SIGINT.
    Int,
    /// SIGHUP.
    Hup,
    /// SIGKILL: no chance to clean up.
    Kill,
    /// SIGSTOP: freeze the process (a peer that hangs without closing its sockets).
    Stop,
    /// SIGCONT: let a stopped process run again.
    Cont,
}

impl Signal {
    fn to_rustix(self) -> rustix::process::Signal {
        use rustix::process::Signal as S;
        match self {
            Signal::Term => S::TERM,
            Signal::Int => S::INT,
            Signal::Hup => S::HUP,
            Signal::Kill => S::KILL,
            Signal::Stop => S::STOP,
            Signal::Cont => S::CONT,
        }
    }
}

/// A child process owned by a test.
///
/// Its stdout and stderr go to files in a temporary directory. Dropping the guard kills exactly
/// this PID (never a process group or a name) and reaps it. If the thread is panicking — a failed
/// assertion — the drop prints the tail of both logs and keeps the files, so the failure output
/// says what the process said. Tests that return `Err` instead of panicking do not unwind: for
/// them the harness's wait errors carry the logs, or call [`Process::logs`] yourself.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    exit: Option<ExitStatus>,
    log_dir: Option<tempfile::TempDir>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Process {
    /// Starts `command` (stdin closed, stdout/stderr to log files). `name` labels logs and errors.
    pub fn spawn(name: &str, mut command: Command) -> Result<Self> {
        let label: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let log_dir = tempfile::Builder::new()
            .prefix(&format!("sluice-e2e-{label}-"))
            .tempdir()
            .context("failed to create a log directory")?;
        let stdout_path = log_dir.path().join("stdout.log");
        let stderr_path = log_dir.path().join("stderr.log");
        let stdout = File::create(&stdout_path)
            .with_context(|| format!("failed to create {}", stdout_path.display()))?;
        let stderr = File::create(&stderr_path)
            .with_context(|| format!("failed to create {}", stderr_path.display()))?;
        command.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let child = command
            .spawn()
            .with_context(|| format!("failed to start {name}: {command:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            exit: None,
            log_dir: Some(log_dir),
            stdout_path,
            stderr_path,
        })
    }

    /// The label given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to stdout so far (lossy UTF-8).
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    /// Everything the process wrote to stderr so far (lossy UTF-8).
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// The directory holding `stdout.log` and `stderr.log`.
    pub fn log_dir(&self) -> &Path {
        self.stdout_path.parent().unwrap_or(&self.stdout_path)
    }

    /// The tail of both logs, labelled, for error messages and failure output.
    pub fn logs(&self) -> String {
        let state = match self.exit {
            Some(status) => format!("exited: {status}"),
            None => "running".to_owned(),
        };
        format!(
            "===== {} (pid {}, {state}); logs in {} =====\n\
             ----- stdout -----\n{}\n----- stderr -----\n{}\n===== end of {} =====",
            self.name,
            self.pid(),
            self.log_dir().display(),
            tail(&self.stdout(), LOG_TAIL_LINES),
            tail(&self.stderr(), LOG_TAIL_LINES),
            self.name,
        )
    }

    /// The exit status if the process has exited (reaping it), `None` while it runs.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            self.exit = self
                .child
                .try_wait()
                .with_context(|| format!("failed to poll {} (pid {})", self.name, self.pid()))?;
        }
        Ok(self.exit)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> Result<bool> {
        Ok(self.try_status()?.is_none())
    }

    /// An error carrying the logs if the process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.try_status()? {
            None => Ok(()),
            Some(status) => bail!(
                "{} exited unexpectedly ({status})\n{}",
                self.name,
                self.logs()
            ),
        }
    }

    /// Waits until something accepts TCP connections on `127.0.0.1:port`, failing early (with the
    /// logs) if the process exits first.
    pub fn wait_for_port(&mut self, port: u16, timeout: Duration) -> Result<()> {
        let what = format!("{} to listen on 127.0.0.1:{port}", self.name);
        self.wait_while_running(&what, timeout, || Ok(wait::tcp_probe(port)))
    }

    /// Waits until `GET url` answers 200, failing early if the process exits first.
    pub fn wait_for_http_ok(&mut self, url: &str, timeout: Duration) -> Result<()> {
        let what = format!("{} to answer 200 at {url}", self.name);
        self.wait_while_running(&what, timeout, || Ok(wait::http_ok_probe(url)))
    }

    /// Waits until `needle` appears in the process's stdout or stderr.
    pub fn wait_for_output(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let what = format!("{} to print {needle:?}", self.name);
        let (stdout, stderr) = (self.stdout_path.clone(), self.stderr_path.clone());
        self.wait_while_running(&what, timeout, || {
            let found =
                read_lossy(&stdout).contains(needle) || read_lossy(&stderr).contains(needle);
            Ok(if found {
                Probe::Ready(())
            } else {
                Probe::NotYet("not printed yet".to_owned())
            })
        })
    }

    /// Polls `probe` until it is ready, the process exits (an error with its logs) or `timeout`
    /// passes (an error with its logs).
    pub fn wait_while_running<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> Result<Probe<T>>,
    ) -> Result<T> {
        let waited = wait::wait_until(what, timeout, || {
            if let Some(status) = self.try_status()? {
                bail!("{} exited ({status}) before it was ready", self.name);
            }
            probe()
        });
        waited.map_err(|error| anyhow!("{error:#}\n{}", self.logs()))
    }

    /// Sends `signal` to this process (only while it has not been reaped, so the PID is still
    /// ours).
    pub fn signal(&mut self, signal: Signal) -> Result<()> {
        if let Some(status) = self.try_status()? {
            bail!(
                "cannot send {signal:?} to {}: it already exited ({status})",
                self.name
            );
        }
        let pid = i32::try_from(self.pid())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| anyhow!("{} has an invalid pid {}", self.name, self.pid()))?;
        rustix::process::kill_process(pid, signal.to_rustix())
            .with_context(|| format!("failed to send {signal:?} to {} (pid {pid:?})", self.name))
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then SIGKILL if the process has not exited within `grace`. Returns how it exited;
    /// `Ok` only says it is gone, the status says whether it shut down cleanly.
    pub fn terminate(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.try_status()? {
            return Ok(status);
        }
        self.signal(Signal::Term)?;
        if let Some(status) = self.wait_timeout(grace)? {
            return Ok(status);
        }
        self.kill()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.try_status()? {
            return Ok(status);
        }
        self.child
            .kill()
            .with_context(|| format!("failed to kill {} (pid {})", self.name, self.pid()))?;
        let status = self
            .child
            .wait()
            .with_context(|| format!("failed to reap {} (pid {})", self.name, self.pid()))?;
        self.exit = Some(status);
        Ok(status)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exit.is_none() {
            // Child::kill does nothing once the child was reaped, so this can only hit our PID.
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
        if thread::panicking() || std::env::var_os(SHOW_LOGS_ENV).is_some() {
            if let Some(dir) = self.log_dir.take() {
                // Kept for the developer reading the failure.
                let _ = dir.keep();
            }
            eprintln!("{}", self.logs());
        }
    }
}

/// Runs `command` to completion (stdin closed) and returns its output; kills it and fails if it
/// takes longer than `timeout`. The exit status is not checked: see [`run_ok`].
pub fn run(command: &mut Command, timeout: Duration) -> Result<Output> {
    run_with_input(command, None, timeout)
}

/// [`run`], and fails (showing stdout and stderr) unless the command exits 0.
pub fn run_ok(command: &mut Command, timeout: Duration) -> Result<Output> {
    let output = run(command, timeout)?;
    ensure_success(command, &output)?;
    Ok(output)
}

/// An error describing `command`'s failure unless `output` says it succeeded.
pub fn ensure_success(command: &Command, output: &Output) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    bail!(
        "{command:?} failed ({})\n----- stdout -----\n{}\n----- stderr -----\n{}",
        output.status,
        tail(&String::from_utf8_lossy(&output.stdout), LOG_TAIL_LINES),
        tail(&String::from_utf8_lossy(&output.stderr), LOG_TAIL_LINES),
    )
}

/// [`run`] with `input` written to the command's stdin (then closed).
pub fn run_with_input(
    command: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output> {
    let deadline = Instant::now() + timeout;
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("failed to start {command:?}"))?;

    let (sender, receiver) = mpsc::channel();
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let input = input.to_vec();
        // A child that exits without reading its input makes this fail; its status says why.
        thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let stdout = child
        .stdout
        .take()
        .map(|pipe| read_in_thread(pipe, 0, sender.clone()));
    let stderr = child
        .stderr
        .take()
        .map(|pipe| read_in_thread(pipe, 1, sender.clone()));
    drop(sender);
    let readers = usize::from(stdout.is_some()) + usize::from(stderr.is_some());

    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{command:?} did not finish within {timeout:?}; killed it");
            }
            Err(error) => return Err(error).context(format!("failed to wait for {command:?}")),
        }
    };

    let mut streams = [Vec::new(), Vec::new()];
    for _ in 0..readers {
        // A grandchild holding the pipes open must not hang the test either.
        let remaining = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(5);
        let (index, bytes) = receiver.recv_timeout(remaining).map_err(|_| {
            anyhow!("{command:?} exited ({status}) but its output pipes stayed open")
        })?;
        streams[index] = bytes;
    }
    let [stdout, stderr] = streams;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn read_in_thread(
    mut pipe: impl Read + Send + 'static,
    index: usize,
    sender: mpsc::Sender<(usize, Vec<u8>)>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = sender.send((index, bytes));
    })
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_else(|error| format!("<cannot read {}: {error}>", path.display()))
}

/// The last `max_lines` lines of `text`, saying how many were left out.
pub fn tail(text: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= max_lines {
        return text.trim_end().to_owned();
    }
    let skipped = lines.len() - max_lines;
    format!(
        "[... {skipped} earlier lines ...]\n{}",
        lines[skipped..].join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.arg("-c").arg(script);
        command
    }

    #[test]
    fn run_collects_output_and_status() {
        let output = run(
            &mut sh("echo out; echo err >&2; exit 3"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(output.status.code(), Some(3));
        assert_eq!(output.stdout, b"out\n");
        assert_eq!(output.stderr, b"err\n");
        let error = run_ok(&mut sh("echo boom >&2; exit 1"), Duration::from_secs(10)).unwrap_err();
        assert!(format!("{error:#}").contains("boom"), "{error:#}");
    }

    #[test]
    fn run_feeds_stdin() {
        let output =
            run_with_input(&mut sh("cat"), Some(b"hello"), Duration::from_secs(10)).unwrap();
        assert_eq!(output.stdout, b"hello");
    }

    #[test]
    fn run_enforces_its_deadline() {
        let started = Instant::now();
        let error = run(&mut sh("exec sleep 30"), Duration::from_millis(300)).unwrap_err();
        assert!(error.to_string().contains("did not finish"), "{error:#}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn process_logs_signals_and_exit() {
        let mut process = Process::spawn(
            "trap test",
            sh(
                "trap 'echo got-term; exit 7' TERM; echo ready; echo warn >&2; \
                while :; do sleep 0.05; done",
            ),
        )
        .unwrap();
        process
            .wait_for_output("ready", Duration::from_secs(10))
            .unwrap();
        assert!(process.is_running().unwrap());
        assert!(process.stderr().contains("warn"));
        let status = process.terminate(Duration::from_secs(10)).unwrap();
        assert_eq!(status.code(), Some(7));
        assert!(process.stdout().contains("got-term"));
        assert!(
            process.signal(Signal::Term).is_err(),
            "signalled a reaped pid"
        );
        let logs = process.logs();
        assert!(
            logs.contains("trap test") && logs.contains("exited"),
            "{logs}"
        );
    }

    #[test]
    fn early_exit_fails_a_wait_with_the_logs() {
        let mut process = Process::spawn("quitter", sh("echo bye-bye >&2; exit 2")).unwrap();
        let error = process
            .wait_for_port(1, Duration::from_secs(10))
            .unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("exited") && message.contains("bye-bye"),
            "{message}"
        );
    }

    #[test]
    fn drop_kills_the_child() {
        let process = Process::spawn("sleeper", sh("exec sleep 30")).unwrap();
        let pid = process.pid();
        drop(process);
        // The child is reaped, so its /proc entry is gone (or belongs to a new process).
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains("sleep"),
            "pid {pid} still runs"
        );
    }

    #[test]
    fn logs_are_kept_when_the_test_fails_and_removed_when_it_passes() {
        let log_dir_after = |fail: bool| {
            let (sender, receiver) = mpsc::channel();
            let outcome = thread::spawn(move || {
                let mut process =
                    Process::spawn("doomed", sh("echo last-words; exec sleep 30")).expect("spawn");
                process
                    .wait_for_output("last-words", Duration::from_secs(10))
                    .expect("output");
                sender.send(process.log_dir().to_path_buf()).expect("send");
                assert!(!fail, "the test failed");
            })
            .join();
            assert_eq!(outcome.is_err(), fail);
            receiver.recv().unwrap()
        };
        let kept = log_dir_after(true);
        assert!(read_lossy(&kept.join("stdout.log")).contains("last-words"));
        std::fs::remove_dir_all(kept).unwrap();
        assert!(!log_dir_after(false).exists());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 5), "a\nb\nc");
        assert_eq!(tail("a\nb\nc", 2), "[... 1 earlier lines ...]\nb\nc");
    }
}
