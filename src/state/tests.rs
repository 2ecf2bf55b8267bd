use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use chrono::{DateTime, TimeDelta, Utc};

use proptest::prelude::*;

use super::*;

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
}

fn order(at: DateTime<Utc>, nodes: u32) -> OrderRecord {
    OrderRecord {
        at,
        nodes,
        client_token: format!("tok-{}-{nodes}", at.timestamp()),
        source: OrderSource::Daemon,
    }
}

fn operation() -> Operation {
    Operation {
        id: "3f0c2a4e-8d61-4b8e-9a57-0c1d2e3f4a5b".to_owned(),
        created_at: t(0),
        chunks: vec![20, 20, 5],
        next_chunk: 1,
        task_nodes_before: 10,
        reason: "pending containers > 100 for 2m".to_owned(),
        current: Some(ChunkIntent {
            client_token: "c0ffee".to_owned(),
            token_created_at: t(60),
            nodes: 20,
            task_nodes_before: 30,
            flow_id: Some(4711),
            sent_at: Some(t(61)),
            sends: 1,
            accepted: true,
            first_sent_at: Some(t(60)),
            ..ChunkIntent::default()
        }),
        completed_nodes: 20,
        counted_nodes: 40,
        ..Operation::default()
    }
}

fn sample_state() -> State {
    let mut state = State::default();
    let c = state.cluster_mut("emr-aaaa1111");
    c.cooldown_until = Some(t(600));
    c.rule_last_fired.insert("pending".to_owned(), t(0));
    c.orders = vec![
        order(t(-3600), 20),
        OrderRecord {
            source: OrderSource::Manual,
            ..order(t(-60), 3)
        },
    ];
    c.operation = Some(operation());
    c.paused = true;
    c.breaker_open = Some(BreakerTrip {
        at: t(5),
        reason: "3 consecutive invalid answers".to_owned(),
        flow_id: None,
    });
    c.schedule_done.insert("morning".to_owned(), t(-7200));
    c.backoff_until = Some(t(900));
    state.cluster_mut("emr-bbbb2222");
    state
}

fn parse_err(bytes: &[u8]) -> String {
    match parse(Path::new("/x/state.json"), bytes) {
        Err(StateError::Corrupt { path, reason }) => {
            assert_eq!(path, Path::new("/x/state.json"));
            reason
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

// ---- helpers ----

#[test]
fn default_state_is_current_version_and_empty() {
    let state = State::default();
    assert_eq!(state.schema_version, SCHEMA_VERSION);
    assert!(state.clusters.is_empty());
}

#[test]
fn cluster_mut_inserts_default_then_returns_the_same_entry() {
    let mut state = State::default();
    assert!(state.cluster("c1").is_none());
    assert_eq!(*state.cluster_mut("c1"), ClusterState::default());
    state.cluster_mut("c1").paused = true;
    assert!(state.cluster_mut("c1").paused);
    assert!(state.cluster("c1").unwrap().paused);
    assert_eq!(state.clusters.len(), 1);
}

#[test]
fn prune_orders_keeps_25_hours_and_the_future() {
    let now = t(100 * 3600);
    let h25 = 25 * 3600;
    let mut c = ClusterState {
        orders: vec![
            order(now - TimeDelta::seconds(h25 + 1), 1),
            order(now - TimeDelta::seconds(h25), 2),
            order(now - TimeDelta::seconds(60), 3),
            order(now + TimeDelta::seconds(60), 4),
        ],
        ..ClusterState::default()
    };
    c.prune_orders(now);
    let kept: Vec<u32> = c.orders.iter().map(|o| o.nodes).collect();
    assert_eq!(kept, vec![2, 3, 4]);
}

#[test]
fn prune_orders_at_the_start_of_time_does_not_panic() {
    let mut c = ClusterState {
        orders: vec![order(DateTime::<Utc>::MIN_UTC, 1)],
        ..ClusterState::default()
    };
    c.prune_orders(DateTime::<Utc>::MIN_UTC);
    assert_eq!(c.orders.len(), 1);
    c.prune_orders(DateTime::<Utc>::MAX_UTC);
    assert!(c.orders.is_empty());
}

#[test]
fn in_flight_nodes_is_the_current_chunk_sent_or_not() {
    let mut op = operation();
    assert_eq!(op.in_flight_nodes(), 20);
    // Intent written, answer not yet: it may have been executed.
    let current = op.current.as_mut().unwrap();
    current.flow_id = None;
    current.sent_at = None;
    current.nodes = 7;
    assert_eq!(op.in_flight_nodes(), 7);
    op.current = None;
    assert_eq!(op.in_flight_nodes(), 0);
}

#[test]
fn is_finished_needs_all_chunks_and_no_current() {
    let mut op = operation();
    assert!(!op.is_finished());
    op.next_chunk = 3;
    assert!(!op.is_finished(), "the last chunk is still current");
    op.current = None;
    assert!(op.is_finished());
    op.next_chunk = 2;
    assert!(!op.is_finished());
    let empty = Operation {
        chunks: vec![],
        next_chunk: 0,
        current: None,
        ..operation()
    };
    assert!(empty.is_finished());
}

// ---- files ----

#[test]
fn round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let state = sample_state();
    {
        let (store, loaded) = StateStore::open(&dir, false).unwrap();
        assert_eq!(loaded, State::default());
        assert_eq!(store.path(), dir.join("state.json"));
        assert_eq!(store.dir(), dir);
        store.save(&state).unwrap();
    }
    let (_store, loaded) = StateStore::open(&dir, false).unwrap();
    assert_eq!(loaded, state);
    assert_eq!(read_only(&dir).unwrap(), state);
}

#[test]
fn creates_missing_directories_with_mode_0700_and_files_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/state");
    let (store, _) = StateStore::open(&dir, false).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    store.save(&State::default()).unwrap();
    assert_eq!(mode(store.path()), 0o600);
    assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600);
}

#[test]
fn save_is_pretty_versioned_and_leaves_no_tmp() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = StateStore::open(tmp.path(), false).unwrap();
    let state = State {
        schema_version: 7, // whatever the caller left here, the file says 2
        ..sample_state()
    };
    store.save(&state).unwrap();
    store.save(&state).unwrap();
    let text = fs::read_to_string(store.path()).unwrap();
    assert!(text.starts_with("{\n  \"schema_version\": 2,\n"), "{text}");
    assert!(text.ends_with("}\n"));
    assert!(!tmp.path().join(TMP_FILE).exists());
    let mut names: Vec<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["lock", "state.json"]);
}

#[test]
fn leftover_tmp_from_a_crash_is_ignored_and_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let state = sample_state();
    {
        let (store, _) = StateStore::open(tmp.path(), false).unwrap();
        store.save(&state).unwrap();
    }
    // A save that crashed after writing half its temporary file.
    fs::write(tmp.path().join(TMP_FILE), b"{\"schema_version\": 2, \"clus").unwrap();
    let (store, loaded) = StateStore::open(tmp.path(), false).unwrap();
    assert_eq!(loaded, state);
    assert!(!tmp.path().join(TMP_FILE).exists());
    store.save(&State::default()).unwrap();
    assert_eq!(read_only(tmp.path()).unwrap(), State::default());
}

#[test]
fn second_open_is_locked_until_the_first_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = StateStore::open(tmp.path(), false).unwrap();
    store.save(&sample_state()).unwrap();
    for reset in [false, true] {
        let err = StateStore::open(tmp.path(), reset).unwrap_err();
        match &err {
            StateError::Locked { path } => assert_eq!(path, &tmp.path().join(LOCK_FILE)),
            other => panic!("expected Locked, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("another emr-autoscaler holds"), "{msg}");
        assert!(msg.contains(&tmp.path().join("lock").display().to_string()));
    }
    // Reading without the lock works while it is held.
    assert_eq!(read_only(tmp.path()).unwrap(), sample_state());
    drop(store);
    let (_again, loaded) = StateStore::open(tmp.path(), false).unwrap();
    assert_eq!(loaded, sample_state());
}

#[test]
fn corrupt_file_is_an_error_naming_it_and_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(STATE_FILE);
    fs::write(&path, b"{ this is not json").unwrap();
    let err = StateStore::open(tmp.path(), false).unwrap_err();
    let StateError::Corrupt { path: named, .. } = &err else {
        panic!("expected Corrupt, got {err:?}");
    };
    assert_eq!(named, &path);
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("fix or remove it"), "{msg}");
    assert!(msg.contains("--reset-state"), "{msg}");
    assert_eq!(fs::read(&path).unwrap(), b"{ this is not json");
    // The failed open released its lock.
    drop(err);
    assert!(matches!(
        StateStore::open(tmp.path(), false),
        Err(StateError::Corrupt { .. })
    ));
    assert!(matches!(
        read_only(tmp.path()),
        Err(StateError::Corrupt { .. })
    ));
}

#[test]
fn reset_moves_a_corrupt_file_aside_and_starts_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(STATE_FILE);
    fs::write(&path, b"\x00\xffgarbage").unwrap();
    let (store, state) = StateStore::open_at(tmp.path(), true, t(0)).unwrap();
    assert_eq!(state, State::default());
    assert!(!path.exists());
    let aside = tmp.path().join("state.json.corrupt-1700000000");
    assert_eq!(fs::read(&aside).unwrap(), b"\x00\xffgarbage");
    store.save(&sample_state()).unwrap();
    drop(store);

    // Another bad file in the same second never replaces the first.
    fs::write(&path, b"{\"schema_version\": 99}").unwrap();
    let (_store, state) = StateStore::open_at(tmp.path(), true, t(0)).unwrap();
    assert_eq!(state, State::default());
    assert_eq!(fs::read(&aside).unwrap(), b"\x00\xffgarbage");
    assert_eq!(
        fs::read(tmp.path().join("state.json.corrupt-1700000000.1")).unwrap(),
        b"{\"schema_version\": 99}"
    );
}

#[test]
fn reset_through_the_public_open_uses_unix_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join(STATE_FILE), b"[]").unwrap();
    let (_store, state) = StateStore::open(tmp.path(), true).unwrap();
    assert_eq!(state, State::default());
    let aside: Vec<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("state.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let secs = aside[0].trim_start_matches("state.json.corrupt-");
    assert!(secs.parse::<i64>().unwrap() > 1_700_000_000, "{secs}");
}

#[test]
fn reset_keeps_a_good_file() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (store, _) = StateStore::open(tmp.path(), false).unwrap();
        store.save(&sample_state()).unwrap();
    }
    let (_store, state) = StateStore::open(tmp.path(), true).unwrap();
    assert_eq!(state, sample_state());
}

#[test]
fn unreadable_state_file_is_corrupt_and_reset_moves_it_aside() {
    let tmp = tempfile::tempdir().unwrap();
    // A directory where the file should be: reading fails even as root.
    fs::create_dir(tmp.path().join(STATE_FILE)).unwrap();
    let reason = match StateStore::open(tmp.path(), false) {
        Err(StateError::Corrupt { reason, .. }) => reason,
        other => panic!("expected Corrupt, got {other:?}"),
    };
    assert!(reason.contains("cannot be read"), "{reason}");
    let (_store, state) = StateStore::open_at(tmp.path(), true, t(0)).unwrap();
    assert_eq!(state, State::default());
    assert!(tmp.path().join("state.json.corrupt-1700000000").is_dir());
}

#[test]
fn read_only_of_a_missing_directory_is_the_default() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        read_only(&tmp.path().join("nope")).unwrap(),
        State::default()
    );
    assert!(!tmp.path().join("nope").exists());
}

// ---- schema ----

#[test]
fn future_schema_is_corrupt_with_a_clear_message() {
    let reason = parse_err(br#"{"schema_version": 99, "clusters": {}}"#);
    assert_eq!(
        reason,
        "schema_version 99 was written by a newer emr-autoscaler; \
             this one reads versions 1 to 2"
    );
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join(STATE_FILE), br#"{"schema_version": 99}"#).unwrap();
    let msg = StateStore::open(tmp.path(), false).unwrap_err().to_string();
    assert!(msg.contains("newer emr-autoscaler"), "{msg}");
    assert!(msg.contains("state.json"), "{msg}");
}

#[test]
fn bad_versions_are_corrupt() {
    assert_eq!(parse_err(b"{}"), "it has no schema_version");
    assert_eq!(
        parse_err(br#"{"schema_version": 0}"#),
        "schema_version 0 is not a known version (1 to 2)"
    );
    assert_eq!(
        parse_err(br#"{"schema_version": "2"}"#),
        "schema_version must be a whole number, found \"2\""
    );
    assert_eq!(
        parse_err(br#"{"schema_version": -1}"#),
        "schema_version must be a whole number, found -1"
    );
    assert_eq!(
        parse_err(br#"{"schema_version": 2.5}"#),
        "schema_version must be a whole number, found 2.5"
    );
}

#[test]
fn not_an_object_is_corrupt() {
    assert_eq!(parse_err(b"[]"), "it holds a JSON array, not an object");
    assert_eq!(parse_err(b"null"), "it holds a JSON null, not an object");
    assert_eq!(parse_err(b"42"), "it holds a JSON number, not an object");
    assert!(parse_err(b"").contains("truncated"));
    assert!(parse_err(b"{} {}").contains("not valid JSON"));
}

#[test]
fn type_errors_name_the_key_path() {
    let reason = parse_err(
        br#"{"schema_version": 2, "clusters": {"c1": {"orders": [
                {"at": "2024-01-01T00:00:00Z", "nodes": -3, "client_token": "x", "source": "daemon"}
            ]}}}"#,
    );
    assert!(
        reason.starts_with("at clusters.c1.orders[0].nodes: "),
        "{reason}"
    );
    assert!(reason.contains("line 2"), "{reason}");

    let reason = parse_err(
        br#"{"schema_version": 2, "clusters": {"c1": {"orders": [
                {"at": "2024-01-01T00:00:00Z", "nodes": 3, "client_token": "x", "source": "robot"}
            ]}}}"#,
    );
    assert!(reason.contains("clusters.c1.orders[0].source"), "{reason}");
    assert!(reason.contains("robot"), "{reason}");
}

#[test]
fn missing_intent_fields_are_not_defaulted() {
    // A chunk intent without its token must never become an empty token.
    let reason = parse_err(
        br#"{"schema_version": 2, "clusters": {"c1": {"operation": {
                "id": "x", "created_at": "2024-01-01T00:00:00Z", "chunks": [5],
                "next_chunk": 0, "task_nodes_before": 1, "reason": "r",
                "current": {"token_created_at": "2024-01-01T00:00:00Z", "nodes": 5,
                            "task_nodes_before": 1}
            }}}}"#,
    );
    assert!(reason.contains("clusters.c1.operation.current"), "{reason}");
    assert!(reason.contains("client_token"), "{reason}");
}

#[test]
fn operation_indexes_past_the_chunks_are_corrupt() {
    let mut state = State::default();
    state.cluster_mut("c1").operation = Some(Operation {
        next_chunk: 3,
        ..operation()
    });
    let bytes = serde_json::to_vec(&state).unwrap();
    assert_eq!(
        parse_err(&bytes),
        "clusters.c1.operation: a chunk intent is current but next_chunk 3 \
             names no planned chunk (of 3)"
    );
    state.cluster_mut("c1").operation = Some(Operation {
        next_chunk: 4,
        current: None,
        ..operation()
    });
    let bytes = serde_json::to_vec(&state).unwrap();
    assert_eq!(
        parse_err(&bytes),
        "clusters.c1.operation: next_chunk 4 is past the 3 planned chunks"
    );
}

#[test]
fn missing_optional_fields_default() {
    let state = parse(
        Path::new("state.json"),
        br#"{"schema_version": 2, "clusters": {"c1": {"paused": true}}, "extra": 1}"#,
    )
    .unwrap();
    let c = state.cluster("c1").unwrap();
    assert!(c.paused);
    assert_eq!(
        *c,
        ClusterState {
            paused: true,
            ..ClusterState::default()
        }
    );
}

const V1_FIXTURE: &str = r#"{
  "schema_version": 1,
  "clusters": {
    "emr-v1": {
      "cooldown_until": "2023-11-14T22:23:20Z",
      "rule_last_fired": { "pending": "2023-11-14T22:13:20Z" },
      "orders": [
        { "at": "2023-11-14T22:13:20Z", "nodes": 20, "client_token": "t1", "source": "daemon" },
        { "at": "2023-11-14T22:14:20Z", "nodes": 2, "client_token": "t2", "source": "manual" }
      ],
      "inflight": {
        "id": "op-1",
        "created_at": "2023-11-14T22:13:20Z",
        "chunks": [20, 20, 5],
        "next_chunk": 1,
        "task_nodes_before": 10,
        "reason": "pending",
        "current": {
          "client_token": "t3",
          "token_created_at": "2023-11-14T22:20:00Z",
          "nodes": 20,
          "task_nodes_before": 30,
          "flow_id": null,
          "sent_at": null
        },
        "completed_nodes": 20
      },
      "paused": false,
      "breaker_open": null,
      "backoff_until": null
    },
    "emr-idle": {}
  }
}
"#;

#[test]
fn v1_migrates_to_v2() {
    let state = parse(Path::new("state.json"), V1_FIXTURE.as_bytes()).unwrap();
    assert_eq!(state.schema_version, 2);
    assert_eq!(state.clusters.len(), 2);
    let c = state.cluster("emr-v1").unwrap();
    let op = c.operation.as_ref().unwrap();
    assert_eq!(op.id, "op-1");
    assert_eq!(op.in_flight_nodes(), 20);
    assert_eq!(op.current.as_ref().unwrap().client_token, "t3");
    assert!(c.schedule_done.is_empty());
    assert_eq!(c.orders.len(), 2);
    assert_eq!(c.orders[1].source, OrderSource::Manual);
    assert_eq!(c.cooldown_until, Some(t(600)));
    assert_eq!(c.rule_last_fired["pending"], t(0));
    assert_eq!(*state.cluster("emr-idle").unwrap(), ClusterState::default());
}

#[test]
fn v1_file_is_saved_as_v2() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join(STATE_FILE), V1_FIXTURE).unwrap();
    let (store, state) = StateStore::open(tmp.path(), false).unwrap();
    // Migration happens in memory; the file changes on the next save.
    assert_eq!(
        fs::read_to_string(store.path()).unwrap(),
        V1_FIXTURE,
        "open must not rewrite the file"
    );
    store.save(&state).unwrap();
    let text = fs::read_to_string(store.path()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["schema_version"], 2);
    assert!(json["clusters"]["emr-v1"].get("inflight").is_none());
    assert_eq!(json["clusters"]["emr-v1"]["operation"]["id"], "op-1");
    assert_eq!(
        json["clusters"]["emr-v1"]["schedule_done"],
        serde_json::json!({})
    );
    drop(store);
    assert_eq!(read_only(tmp.path()).unwrap(), state);
}

#[test]
fn v1_with_a_bad_operation_is_corrupt() {
    let bad = V1_FIXTURE.replace("\"next_chunk\": 1", "\"next_chunk\": 3");
    let reason = parse_err(bad.as_bytes());
    assert!(reason.starts_with("clusters.emr-v1.operation:"), "{reason}");
}

#[test]
fn every_truncation_of_a_valid_file_is_corrupt_or_whole() {
    let mut bytes = serde_json::to_vec_pretty(&sample_state()).unwrap();
    bytes.push(b'\n');
    let full = parse(Path::new("s"), &bytes).unwrap();
    assert_eq!(full, sample_state());
    let closing = bytes.iter().rposition(|&b| b == b'}').unwrap();
    for len in 0..bytes.len() {
        match parse(Path::new("s"), &bytes[..len]) {
            Ok(state) => {
                assert!(len > closing, "prefix of {len} bytes parsed");
                assert_eq!(state, full);
            }
            Err(StateError::Corrupt { .. }) => assert!(len <= closing),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
}

proptest! {
    #[test]
    fn garbage_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let result = parse(Path::new("s"), &bytes);
        let fine = matches!(result, Ok(_) | Err(StateError::Corrupt { .. }));
        prop_assert!(fine, "unexpected {:?}", result);
    }

    #[test]
    fn mutated_state_files_never_panic(
        at in 0usize..4096,
        byte in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let mut bytes = serde_json::to_vec_pretty(&sample_state()).unwrap();
        let at = at % bytes.len();
        if cut {
            bytes.truncate(at);
        } else {
            bytes[at] = byte;
        }
        let result = parse(Path::new("s"), &bytes);
        let fine = matches!(result, Ok(_) | Err(StateError::Corrupt { .. }));
        prop_assert!(fine, "unexpected {:?}", result);
    }
}

#[test]
fn a_backoff_written_under_its_old_name_is_read() {
    let state: State = serde_json::from_str(
        r#"{"schema_version": 2, "clusters": {"emr-a": {"sold_out_until": "2024-03-01T10:10:00Z"}}}"#,
    )
    .unwrap();
    assert_eq!(
        state.clusters["emr-a"].backoff_until,
        Some("2024-03-01T10:10:00Z".parse().unwrap())
    );
    let written = serde_json::to_string(&state).unwrap();
    assert!(
        written.contains("\"backoff_until\":\"2024-03-01T10:10:00Z\""),
        "{written}"
    );
}
