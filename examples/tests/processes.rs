//! Three `node` processes on loopback converge: records written on each reach all, and
//! a line published on one is printed by every one. Bounded in time; the processes are
//! killed at the end whatever happens.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

struct Node {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn spawn(id: &str, peers: &[String]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_node"));
        cmd.args(["--id", id, "--listen", "127.0.0.1:0", "--topic", "chat"]);
        for p in peers {
            cmd.args(["--peer", p]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write stdin");
        self.stdin.flush().expect("flush stdin");
    }

    /// Reads lines until one matches `pred` or `deadline`.
    fn wait_line(&mut self, deadline: Instant, pred: impl Fn(&str) -> bool) -> Option<String> {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return Some(l.clone());
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            self.seen.push(line.clone());
            if pred(&line) {
                return Some(line);
            }
        }
    }

    fn listening(&mut self, deadline: Instant) -> String {
        let line = self
            .wait_line(deadline, |l| l.starts_with("listening on "))
            .expect("node never printed `listening on`");
        line.trim_start_matches("listening on ").to_owned()
    }
}

#[test]
fn three_node_processes_converge() {
    let deadline = Instant::now() + LIMIT;
    let mut a = Node::spawn("alice", &[]);
    let a_addr = a.listening(deadline);
    let mut b = Node::spawn("bob", std::slice::from_ref(&a_addr));
    let b_addr = b.listening(deadline);
    let mut c = Node::spawn("carol", &[a_addr, b_addr]);
    c.listening(deadline);
    let mut nodes = [a, b, c];
    // Wait until everyone has both peers before publishing (broadcasts reach the peers
    // connected at the time).
    for n in &mut nodes {
        loop {
            n.send("stats");
            let line = n
                .wait_line(deadline, |l| l.starts_with("records "))
                .expect("no stats line");
            n.seen.retain(|l| !l.starts_with("records "));
            if line.ends_with("peers 2") {
                break;
            }
            assert!(Instant::now() < deadline, "peers never connected: {line}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for (i, n) in nodes.iter_mut().enumerate() {
        n.send(&format!("put key-{i} value-{i}"));
    }
    nodes[0].send("hello from alice");
    for n in &mut nodes {
        let got = n.wait_line(deadline, |l| {
            l.starts_with("message from alice") && l.ends_with("hello from alice")
        });
        assert!(got.is_some(), "message not printed: {:?}", n.seen);
    }
    // Every store ends with the three records and one fingerprint.
    loop {
        let mut states = Vec::new();
        for n in &mut nodes {
            n.send("stats");
            let line = n
                .wait_line(deadline, |l| l.starts_with("records "))
                .expect("no stats line");
            n.seen.retain(|l| !l.starts_with("records "));
            let mut w = line.split(' ');
            let count = w.nth(1).unwrap_or_default().to_owned();
            let fp = w.nth(1).unwrap_or_default().to_owned();
            states.push((count, fp));
        }
        if states.iter().all(|s| s.0 == "3") && states.windows(2).all(|w| w[0].1 == w[1].1) {
            break;
        }
        assert!(Instant::now() < deadline, "not converged: {states:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    for n in &mut nodes {
        assert!(
            n.seen.iter().any(|l| l.starts_with("applied ")),
            "no applied records printed: {:?}",
            n.seen
        );
    }
}
