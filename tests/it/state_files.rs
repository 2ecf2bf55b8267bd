//! The state directory lock across processes, and a version-1 file through the
//! public API.
//!
//! The other process is this test binary itself, run again with
//! `STATE_FILES_CHILD` set so that only `child_process` does anything.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use emr_autoscaler::state::{self, SCHEMA_VERSION, StateError, StateStore};

const CHILD_ENV: &str = "STATE_FILES_CHILD";
const CHILD_DIR_ENV: &str = "STATE_FILES_DIR";

/// Exit codes of the child's `open` attempt.
const OPENED: i32 = 0;
const LOCKED: i32 = 42;
const OTHER: i32 = 3;

/// Not a test on its own: the body of the child process.
///
/// - `probe`: try to open the directory once and exit with [`OPENED`],
///   [`LOCKED`] or [`OTHER`].
/// - `hold`: open it, print `child: held`, and keep it until stdin closes.
/// - `wait`: print `child: ready` and wait until stdin closes, holding nothing.
#[test]
fn child_process() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = std::env::var_os(CHILD_DIR_ENV).unwrap_or_default();
    let dir = Path::new(&dir);
    // Never outlive a parent that failed to close our stdin.
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(120));
        std::process::exit(OTHER);
    });
    let wait_for_stdin_eof = || {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).unwrap_or(0) > 0 {}
    };
    match mode.as_str() {
        "probe" => std::process::exit(match StateStore::open(dir, false) {
            Ok(_) => OPENED,
            Err(StateError::Locked { .. }) => LOCKED,
            Err(e) => {
                eprintln!("{e}");
                OTHER
            }
        }),
        "hold" => {
            let (_store, _) = StateStore::open(dir, false).unwrap();
            println!("child: held");
            std::io::stdout().flush().unwrap();
            wait_for_stdin_eof();
            std::process::exit(OPENED);
        }
        "wait" => {
            println!("child: ready");
            std::io::stdout().flush().unwrap();
            wait_for_stdin_eof();
            std::process::exit(OPENED);
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn child(mode: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        // The test's path in the one integration-test binary.
        "state_files::child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, mode)
    .env(CHILD_DIR_ENV, dir)
    .stderr(Stdio::inherit());
    cmd
}

fn probe(dir: &Path) -> ExitStatus {
    child("probe", dir).stdout(Stdio::null()).status().unwrap()
}

/// Starts a long-running child and waits for its first line.
fn start(mode: &str, dir: &Path, expect: &str) -> std::process::Child {
    let mut proc = child(mode, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(proc.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child exited before saying {expect}"
        );
        // libtest may print "test child_process ... " before it on the same line.
        if line.trim_end().ends_with(expect) {
            break;
        }
    }
    proc
}

fn finish(mut proc: std::process::Child) {
    drop(proc.stdin.take());
    assert_eq!(proc.wait().unwrap().code(), Some(OPENED));
}

#[test]
fn another_process_cannot_open_a_held_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = StateStore::open(tmp.path(), false).unwrap();
    assert_eq!(probe(tmp.path()).code(), Some(LOCKED));
    drop(store);
    assert_eq!(probe(tmp.path()).code(), Some(OPENED));
}

#[test]
fn this_process_cannot_open_a_directory_another_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let holder = start("hold", tmp.path(), "child: held");
    let err = StateStore::open(tmp.path(), false).unwrap_err();
    assert!(
        matches!(&err, StateError::Locked { path } if path == &tmp.path().join("lock")),
        "{err:?}"
    );
    assert!(err.to_string().contains("another emr-autoscaler holds"));
    // Reading without the lock still works.
    assert_eq!(
        state::read_only(tmp.path()).unwrap(),
        state::State::default()
    );
    finish(holder);
    // The lock died with its process.
    let (_store, _) = StateStore::open(tmp.path(), false).unwrap();
}

#[test]
fn child_processes_do_not_inherit_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = StateStore::open(tmp.path(), false).unwrap();
    let bystander = start("wait", tmp.path(), "child: ready");
    drop(store);
    // Were the lock descriptor inherited, the child (alive until `finish`)
    // would still hold it. Other tests of this binary spawn processes too,
    // and a fork holds every descriptor until its exec closes them: retry
    // for a moment so that window is not mistaken for inheritance.
    let mut tries = 0;
    let reopened = loop {
        match StateStore::open(tmp.path(), false) {
            Err(state::StateError::Locked { .. }) if tries < 60 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => break other,
        }
    };
    finish(bystander);
    reopened.unwrap();
}

const V1_FIXTURE: &str = r#"{
  "schema_version": 1,
  "clusters": {
    "emr-legacy": {
      "cooldown_until": null,
      "rule_last_fired": {},
      "orders": [
        { "at": "2024-03-01T10:00:00Z", "nodes": 20, "client_token": "a", "source": "daemon" }
      ],
      "inflight": {
        "id": "5b0e8c4a-1111-4222-8333-944455556666",
        "created_at": "2024-03-01T10:00:00Z",
        "chunks": [20, 4],
        "next_chunk": 1,
        "task_nodes_before": 2,
        "reason": "schedule floor",
        "current": null,
        "completed_nodes": 20
      },
      "paused": true,
      "breaker_open": { "at": "2024-03-01T09:00:00Z", "reason": "auth" },
      "sold_out_until": "2024-03-01T10:10:00Z"
    }
  }
}
"#;

#[test]
fn a_version_1_directory_opens_and_is_saved_as_version_2() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("state.json"), V1_FIXTURE).unwrap();

    let from_read = state::read_only(tmp.path()).unwrap();
    let (store, mut loaded) = StateStore::open(tmp.path(), false).unwrap();
    assert_eq!(loaded, from_read);
    assert_eq!(loaded.schema_version, SCHEMA_VERSION);
    let c = loaded.cluster_mut("emr-legacy");
    assert!(c.paused);
    assert_eq!(c.breaker_open.as_ref().unwrap().reason, "auth");
    let op = c.operation.as_ref().unwrap();
    assert_eq!(op.chunks, [20, 4]);
    assert_eq!(op.in_flight_nodes(), 0);
    assert!(!op.is_finished());
    assert!(c.schedule_done.is_empty());

    store.save(&loaded).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.path()).unwrap()).unwrap();
    assert_eq!(json["schema_version"], 2);
    assert!(json["clusters"]["emr-legacy"].get("inflight").is_none());
    assert_eq!(json["clusters"]["emr-legacy"]["operation"]["chunks"][1], 4);
    drop(store);
    assert_eq!(state::read_only(tmp.path()).unwrap(), loaded);
}
