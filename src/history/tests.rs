use std::time::Duration;

use super::log::{FileLog, HISTORY_FILE};
use super::*;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn order(secs: i64, token: &str) -> Event {
    Event::new(
        at(secs),
        "emr-a",
        Kind::ScaleOut,
        "accepted",
        "pending memory",
    )
    .nodes(2)
    .offering("default")
    .token(Some(token.into()))
    .flow(Some(secs))
}

#[test]
fn an_event_is_written_with_every_field_and_read_back() {
    let e = Event::new(
        at(0),
        "emr-a",
        Kind::Pause,
        "paused",
        "paused by an operator",
    );
    let text = serde_json::to_string(&e).unwrap();
    assert_eq!(
        text,
        r#"{"at":"2027-01-15T08:00:00Z","instance_id":"emr-a","kind":"pause","nodes":null,"offering":null,"client_token":null,"flow_id":null,"outcome":"paused","reason":"paused by an operator"}"#
    );
    assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e);
    for k in Kind::ALL {
        assert_eq!(Kind::parse(k.label()), Some(k));
        assert_eq!(serde_json::to_value(k).unwrap(), k.label());
    }
}

#[test]
fn a_query_is_newest_first_and_filtered() {
    let events: Vec<Event> = (0..5)
        .map(|i| {
            let mut e = order(i, &format!("t{i}"));
            if i % 2 == 1 {
                e.instance_id = "emr-b".into();
            }
            e
        })
        .collect();
    let all = Query::default().select(events.iter());
    assert_eq!(
        all.iter().map(|e| e.at).collect::<Vec<_>>(),
        (0..5).rev().map(at).collect::<Vec<_>>()
    );
    let q = Query {
        cluster: Some("emr-a".into()),
        limit: Some(2),
        since: Some(at(1)),
    };
    let picked = q.select(events.iter());
    assert_eq!(
        picked.iter().map(|e| e.at).collect::<Vec<_>>(),
        vec![at(4), at(2)]
    );
}

#[tokio::test]
async fn one_order_told_twice_is_one_event_and_the_file_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::start(Log::File(FileLog::new(dir.path(), 100)), 100);
    history.record(order(1, "tok-1"));
    history.record(order(2, "tok-1"));
    history.record(order(3, "tok-2"));
    history.record(Event::new(at(4), "emr-a", Kind::Pause, "paused", "op"));
    history.record(Event::new(at(5), "emr-a", Kind::Pause, "paused", "op"));
    history.close(Duration::from_secs(5)).await;
    let kinds: Vec<_> = history
        .query(&Query::default())
        .await
        .into_iter()
        .map(|e| (e.kind, e.client_token))
        .collect();
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    let text = std::fs::read_to_string(dir.path().join(HISTORY_FILE)).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    // A restart reads the same events.
    let again = History::start(Log::File(FileLog::new(dir.path(), 100)), 100);
    assert_eq!(again.load().await.unwrap(), 4);
    assert_eq!(
        again.query(&Query::default()).await,
        history.query(&Query::default()).await
    );
}

#[tokio::test]
async fn a_cut_line_is_skipped_and_mended_before_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(HISTORY_FILE);
    let good = serde_json::to_string(&order(1, "a")).unwrap();
    // kill -9 in the middle of the second line.
    std::fs::write(&path, format!("{good}\nnot json\n{}", &good[..20])).unwrap();
    let history = History::start(Log::File(FileLog::new(dir.path(), 100)), 100);
    assert_eq!(history.load().await.unwrap(), 1);
    history.record(order(2, "b"));
    history.close(Duration::from_secs(5)).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let read: Vec<Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(read.len(), 2, "{text}");
}

#[tokio::test]
async fn the_file_keeps_the_newest_max_events() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::start(Log::File(FileLog::new(dir.path(), 10)), 10);
    for i in 0..35 {
        history.record(order(i, &format!("t{i}")));
    }
    history.close(Duration::from_secs(5)).await;
    let lines = std::fs::read_to_string(dir.path().join(HISTORY_FILE))
        .unwrap()
        .lines()
        .count();
    assert!((10..=11).contains(&lines), "{lines} lines");
    let kept = history.query(&Query::default()).await;
    assert_eq!(kept.len(), 10);
    assert_eq!(kept[0].at, at(34));
    let again = History::start(Log::File(FileLog::new(dir.path(), 10)), 10);
    again.load().await.unwrap();
    assert_eq!(again.query(&Query::default()).await, kept);
}

#[derive(Debug, Default)]
struct Heard(Mutex<Vec<Kind>>);

impl Listener for Heard {
    fn offer(&self, event: &Event) {
        self.0.lock().unwrap().push(event.kind);
    }
}

#[tokio::test]
async fn listeners_hear_each_event_once_and_a_follower_records_nothing() {
    let history = History::start(Log::Memory, 100);
    let heard = Arc::new(Heard::default());
    history.listen(Some(heard.clone()));
    history.record(order(1, "x"));
    history.record(order(1, "x"));
    history.follow(true);
    history.record(order(2, "y"));
    history.close(Duration::from_secs(5)).await;
    assert_eq!(*heard.0.lock().unwrap(), vec![Kind::ScaleOut]);
}
