#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "tests: a failure is a test failure"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::chain::{Broken, verify};
use crate::key::read_public_key;
use crate::{AuditLog, AuditOptions, Decision, Event, Fsync};

fn options(dir: &Path) -> AuditOptions {
    AuditOptions {
        path: dir.join("audit.jsonl"),
        key: dir.join("audit-signing.key"),
        fsync: Fsync::Always,
        checkpoint_every: 5,
        checkpoint_interval: Duration::from_secs(3600),
        max_file_bytes: u64::MAX,
        keep_files: 0,
        version: "test".into(),
        config_sha256: "00".into(),
        hash_key_id: None,
        tee: None,
    }
}

fn call(i: usize) -> Event {
    Event::Call {
        session: "s1".into(),
        principal: "alice".into(),
        client: None,
        method: "tools/call".into(),
        upstream: Some("files".into()),
        target: format!("files__read_{i}"),
        arguments_hmac_sha256: Some("ab".repeat(32)),
        arguments: None,
        decision: if i.is_multiple_of(3) {
            Decision::Deny
        } else {
            Decision::Allow
        },
        reason: None,
        policies: vec!["read-only-by-default".into()],
        approved_by: None,
    }
}

async fn write_log(opts: &AuditOptions, n: usize) {
    let log = AuditLog::open(opts.clone()).unwrap();
    for i in 0..n {
        log.record(call(i)).await.unwrap();
    }
    log.close().await;
}

fn check(path: &Path, keys: &[Vec<u8>]) -> Result<crate::chain::Summary, Broken> {
    verify(
        std::io::BufReader::new(std::fs::File::open(path).unwrap()),
        keys,
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test]
async fn obs_01_a_written_log_verifies_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    write_log(&opts, 12).await;
    let key = read_public_key(&crate::key::public_key_path(&opts.key)).unwrap();
    let s = check(&opts.path, &[key]).unwrap();
    // opening checkpoint, start, 12 calls, stop, and checkpoints every 5 records.
    assert_eq!(s.first_seq, 0);
    assert!(s.records >= 15 && s.checkpoints >= 3, "{s:?}");
    assert_eq!(s.unsigned_tail, 0, "close signs the tail");
    let text = std::fs::read_to_string(&opts.path).unwrap();
    assert!(text.contains("\"type\":\"call\"") && text.contains("\"decision\":\"deny\""));
}

#[tokio::test]
async fn obs_01_every_kind_of_tampering_is_caught_at_the_first_bad_record() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    write_log(&opts, 12).await;
    let original = lines(&opts.path);
    let key = read_public_key(&crate::key::public_key_path(&opts.key)).unwrap();
    let k = 8; // a call record in the middle (0-based line index)
    assert!(original[k].contains("\"type\":\"call\""));
    let tampered = dir.path().join("tampered.jsonl");
    let cases: Vec<(&str, Vec<String>, usize)> = vec![
        (
            "edit",
            {
                let mut l = original.clone();
                l[k] = l[k].replace("\"alice\"", "\"mallory\"");
                l
            },
            k + 1,
        ),
        (
            "edit and re-hash",
            {
                // Recomputing the edited record's own hash does not help: the next
                // record no longer chains to it.
                let mut l = original.clone();
                let r = crate::chain::parse(&l[k]).unwrap();
                let mut ev: Event = serde_json::from_value(r.event).unwrap();
                if let Event::Call { principal, .. } = &mut ev {
                    *principal = "mallory".into();
                }
                let ts = serde_json::from_str::<serde_json::Value>(&l[k]).unwrap()["ts"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                l[k] = crate::chain::encode(r.seq, &ts, &r.prev, &ev).unwrap().0;
                l
            },
            k + 2,
        ),
        (
            "delete",
            {
                let mut l = original.clone();
                l.remove(k);
                l
            },
            k + 1,
        ),
        (
            "reorder",
            {
                let mut l = original.clone();
                l.swap(k, k + 1);
                l
            },
            k + 1,
        ),
        (
            "insert",
            {
                let mut l = original.clone();
                l.insert(k + 1, original[k - 1].clone());
                l
            },
            k + 2,
        ),
        ("cut the head", original[3..].to_vec(), 1),
    ];
    for (what, l, line) in cases {
        write_lines(&tampered, &l);
        let e = check(&tampered, std::slice::from_ref(&key)).expect_err(what);
        assert_eq!(e.line, line, "{what}: {e}");
    }
    // An untrusted key: a forger who re-signs everything with a key of their own.
    write_lines(&tampered, &original);
    let other = tempfile::tempdir().unwrap();
    let forged = crate::key::SigningKey::load_or_create(&other.path().join("k")).unwrap();
    let forged_pub = crate::key::unhex(forged.public_hex()).unwrap();
    let e = check(&tampered, &[forged_pub]).unwrap_err();
    assert!(e.reason.contains("not among the trusted keys"), "{e}");
}

#[tokio::test]
async fn obs_01_a_restart_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    write_log(&opts, 3).await;
    let first = check(&opts.path, &[]).unwrap();
    assert!(first.closed, "a clean stop closes the file");
    write_log(&opts, 4).await;
    // The closed file was set aside whole; the chain goes on in the new one.
    let aside = rotated(dir.path());
    assert_eq!(aside.len(), 1, "{aside:?}");
    let old = check(&aside[0], &[]).unwrap();
    assert_eq!(
        (old.last_seq, &old.last_hash),
        (first.last_seq, &first.last_hash)
    );
    let s = check(&opts.path, &[]).unwrap();
    assert!(s.closed);
    assert_eq!(s.first_seq, first.last_seq + 1);
    let opening = crate::chain::parse(&lines(&opts.path)[0]).unwrap();
    assert_eq!(opening.prev, first.last_hash, "chained to the file before");
    assert_eq!(lines(&opts.path).len() as u64, s.records);
}

#[tokio::test]
async fn obs_01_a_torn_file_set_aside_never_replaces_another() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    write_log(&opts, 3).await;
    let whole = std::fs::read_to_string(&opts.path).unwrap();
    // The same torn file twice (a crash, then the same again): both are kept aside.
    let torn = format!("{whole}{{\"seq\":99,\"ts");
    for _ in 0..2 {
        std::fs::write(&opts.path, &torn).unwrap();
        let log = AuditLog::open(opts.clone()).unwrap();
        log.close().await;
    }
    let kept: Vec<String> = rotated(dir.path())
        .iter()
        .filter(|p| p.to_string_lossy().contains("-torn"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(kept.len(), 2, "{:?}", rotated(dir.path()));
    assert!(kept.iter().all(|k| *k == torn));
}

#[tokio::test]
async fn obs_01_a_file_cut_anywhere_is_not_closed() {
    let dir = tempfile::tempdir().unwrap();
    let opts = AuditOptions {
        checkpoint_every: 2,
        ..options(dir.path())
    };
    write_log(&opts, 7).await;
    let all = lines(&opts.path);
    assert!(check(&opts.path, &[]).unwrap().closed);
    let tampered = dir.path().join("cut.jsonl");
    // Cut after each record, signed checkpoints included: the chain still holds, but
    // only the whole file ends with the checkpoint that closes it.
    for keep in 1..all.len() {
        write_lines(&tampered, &all[..keep]);
        let s = check(&tampered, &[]).unwrap();
        assert!(
            !s.closed,
            "cut to {keep} of {} lines passed as closed",
            all.len()
        );
    }
    // A closing checkpoint cannot be forged onto a cut file: re-labelling a periodic
    // one breaks its signature.
    let periodic = all
        .iter()
        .rposition(|l| l.contains("\"type\":\"checkpoint\"") && !l.contains("closes_file"))
        .unwrap();
    let relabelled = all[periodic].replace(
        "\"opens_file\":false",
        "\"opens_file\":false,\"closes_file\":true",
    );
    // The forger recomputes the record's own hash (which needs no key).
    let at = relabelled.rfind(",\"hash\":\"").unwrap();
    let body = format!("{}}}", &relabelled[..at]);
    let hash = crate::key::hex(&<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()));
    let resealed = format!("{},\"hash\":\"{hash}\"}}", &relabelled[..at]);
    assert!(crate::chain::parse(&resealed).is_ok());
    let mut cut: Vec<String> = all[..periodic].to_vec();
    cut.push(resealed);
    write_lines(&tampered, &cut);
    let e = check(&tampered, &[]).unwrap_err();
    assert!(e.reason.contains("signature"), "{e}");
}

fn rotated(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("audit-0") && n.ends_with(".jsonl")
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn obs_01_rotated_files_each_verify_and_chain_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.max_file_bytes = 2_000;
    opts.keep_files = 3;
    let log = AuditLog::open(opts.clone()).unwrap();
    for i in 0..60 {
        log.record(call(i)).await.unwrap();
    }
    log.close().await;
    let files = rotated(dir.path());
    assert_eq!(files.len(), 3, "older files pruned: {files:?}");
    let mut last_hash = None;
    for f in files.iter().chain([&opts.path]) {
        let s = check(f, &[]).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let first = crate::chain::parse(&lines(f)[0]).unwrap();
        if let Some(h) = last_hash {
            assert_eq!(first.prev, h, "{} chains to the file before", f.display());
        }
        last_hash = Some(s.last_hash);
    }
}

#[tokio::test]
async fn obs_01_restarts_do_not_shorten_the_history_kept() {
    // Each clean stop closes the file and the next start sets it aside: many small
    // files, far under `keep_files` full files' worth — none is pruned.
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.keep_files = 3;
    for _ in 0..8 {
        write_log(&opts, 2).await;
    }
    assert_eq!(rotated(dir.path()).len(), 7, "{:?}", rotated(dir.path()));
}

#[tokio::test]
async fn obs_01_a_torn_last_record_is_kept_aside_and_the_chain_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    write_log(&opts, 3).await;
    let whole = check(&opts.path, &[]).unwrap();
    let mut text = std::fs::read_to_string(&opts.path).unwrap();
    text.push_str("{\"seq\":99,\"ts\":\"2026-");
    std::fs::write(&opts.path, text).unwrap();
    write_log(&opts, 2).await;
    let torn: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("-torn"))
        .collect();
    assert_eq!(torn.len(), 1, "the damaged file is kept");
    let e = check(&torn[0], &[]).unwrap_err();
    assert_eq!(
        e.line,
        lines(&torn[0]).len(),
        "its last line is the torn one: {e}"
    );
    let s = check(&opts.path, &[]).unwrap();
    assert_eq!(s.first_seq, whole.last_seq + 1);
    let first = crate::chain::parse(&lines(&opts.path)[0]).unwrap();
    assert_eq!(first.prev, whole.last_hash);
}

#[tokio::test]
async fn obs_01_a_log_that_cannot_be_written_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.path = PathBuf::from("/dev/full");
    let e = AuditLog::open(opts).unwrap_err();
    assert!(e.to_string().contains("cannot be written"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_01_a_quiet_log_is_signed_within_the_checkpoint_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.checkpoint_every = 1_000;
    opts.checkpoint_interval = Duration::from_millis(300);
    opts.fsync = Fsync::Interval(Duration::from_millis(100));
    let log = AuditLog::open(opts.clone()).unwrap();
    log.record(call(1)).await.unwrap();
    log.record(call(2)).await.unwrap();
    let mut signed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if check(&opts.path, &[]).unwrap().unsigned_tail == 0 {
            signed = true;
            break;
        }
    }
    assert!(
        signed,
        "a periodic checkpoint signs the records without a close"
    );
    log.close().await;
}

#[test]
fn records_sealed_from_encoded_events_are_the_records_serde_writes() {
    // The log encodes an event outside its lock and places it in the chain inside:
    // the bytes (and so every hash an existing log was verified against) are those of
    // the whole record serialised at once.
    #[derive(serde::Serialize)]
    struct Whole<'a> {
        seq: u64,
        ts: &'a str,
        prev: &'a str,
        event: &'a Event,
    }
    let odd = Event::Stop;
    let mut quoted = call(3);
    if let Event::Call { target, .. } = &mut quoted {
        *target = "na\"me\\ with \u{1F600} and \u{7}".into();
    }
    for (e, ts) in [
        (call(1), "2026-11-26T09:00:00.123Z"),
        (quoted, "2026-11-26T09:00:00.123Z"),
        (odd, "a \"ts\" that needs\\escaping\n"),
    ] {
        let prev = crate::chain::GENESIS;
        let whole = serde_json::to_string(&Whole {
            seq: 42,
            ts,
            prev,
            event: &e,
        })
        .unwrap();
        let (line, hash) = crate::chain::encode(42, ts, prev, &e).unwrap();
        // Appended to a buffer that already holds a line: the same bytes and hash.
        let mut buf = String::from("{\"earlier\":1}\n");
        let appended = crate::chain::seal_into(
            &mut buf,
            42,
            ts,
            prev,
            &crate::chain::Encoded::new(&e).unwrap(),
        )
        .unwrap();
        assert_eq!(appended, hash);
        assert_eq!(&buf["{\"earlier\":1}\n".len()..], line);
        let at = line.rfind(",\"hash\":").unwrap();
        assert_eq!(format!("{}}}", &line[..at]), whole);
        assert_eq!(
            hash,
            crate::key::hex(&<sha2::Sha256 as sha2::Digest>::digest(whole.as_bytes()))
        );
    }
}

fn targets(path: &Path) -> Vec<String> {
    lines(path)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"]["type"] == "call")
        .map(|r| r["event"]["target"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_01_events_noted_ahead_are_written_in_their_place_before_anything_answers() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    let log = AuditLog::open(opts.clone()).unwrap();
    let path = opts.path.clone();

    // Queued, not yet written; the next record carries it, in its place.
    let mark = log.ahead_mark();
    log.note_ahead(call(1));
    assert!(targets(&path).is_empty());
    log.record(call(2)).await.unwrap();
    assert_eq!(targets(&path), ["files__read_1", "files__read_2"]);
    log.flush_ahead(mark).unwrap(); // nothing waits: no write
    assert_eq!(
        lines(&path).len(),
        4,
        "start, opening checkpoint, two calls"
    );

    // What the owner flushes before its answer leaves.
    log.note_ahead(call(4));
    log.flush_ahead(mark).unwrap();
    assert_eq!(targets(&path).len(), 3);

    // What nobody flushes is written by the next tick (250 ms).
    log.note_ahead(call(5));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(targets(&path).last().unwrap(), "files__read_5");

    // A full queue writes itself.
    for i in 0..crate::log::MAX_AHEAD {
        log.note_ahead(call(100 + i));
    }
    assert_eq!(targets(&path).len(), 4 + crate::log::MAX_AHEAD);

    // And closing writes what still waits, ahead of the stop record.
    log.note_ahead(call(7));
    log.close().await;
    assert_eq!(targets(&path).last().unwrap(), "files__read_7");
    let keys = vec![read_public_key(&crate::key::public_key_path(&opts.key)).unwrap()];
    let s = check(&path, &keys).unwrap();
    assert_eq!(s.records as usize, lines(&path).len());
}

/// A log on a pipe whose reader goes away: every later write fails.
fn piped_log(dir: &Path) -> (AuditLog, std::fs::File) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let pipe = dir.join("audit.pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .unwrap();
    assert!(made.success());
    // Opened without waiting for a writer; the log finds its reader there.
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(&pipe)
        .unwrap();
    let mut opts = options(dir);
    opts.path = pipe;
    let log = AuditLog::open(opts).unwrap();
    (log, reader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_01_events_noted_ahead_and_lost_with_a_failed_write_fail_their_flush() {
    let dir = tempfile::tempdir().unwrap();
    let (log, reader) = piped_log(dir.path());
    let mark = log.ahead_mark();
    log.note_ahead(call(1));
    log.flush_ahead(mark).unwrap();
    drop(reader);

    // Lost in the owner's own flush.
    let mark = log.ahead_mark();
    log.note_ahead(call(2));
    assert!(log.flush_ahead(mark).is_err());

    // Lost with a write by someone else (here the tick): nothing waits any more, and
    // the flush still fails.
    let mark = log.ahead_mark();
    log.note_ahead(call(3));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(log.flush_ahead(mark).is_err());

    // A request that noted nothing since its mark has nothing to fail for.
    let mark = log.ahead_mark();
    log.flush_ahead(mark).unwrap();

    // An event noted after the log closed was never queued.
    log.close().await;
    let mark = log.ahead_mark();
    log.note_ahead(call(5));
    assert!(log.flush_ahead(mark).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_01_a_pipe_nobody_reads_fails_writes_at_once_instead_of_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let (log, reader) = piped_log(dir.path());
    log.record(call(1)).await.unwrap();
    drop(reader);
    // The failed write marks the log torn; the next one reopens the pipe, which has
    // no reader: both fail at once, and so does opening a log on it.
    for i in 2..4 {
        let r = tokio::time::timeout(Duration::from_secs(5), log.record(call(i))).await;
        assert!(matches!(r, Ok(Err(_))), "{r:?}");
    }
    let mut opts = options(dir.path());
    opts.path = dir.path().join("audit.pipe");
    assert!(AuditLog::open(opts).is_err());
}

#[test]
fn obs_01_the_argument_hash_key_is_made_once_private_and_never_replaced() {
    use crate::key::HashKey;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit-hash.key");
    // `load` never makes a key: a new one would hash to nothing a record carries.
    assert!(HashKey::load(&path).is_err());
    let made = HashKey::load_or_create(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 32);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by its owner only");
    }
    let again = HashKey::load_or_create(&path).unwrap();
    assert_eq!(made.id(), again.id(), "an existing key is kept");
    assert_eq!(
        made.mac(b"{\"pin\":\"1234\"}"),
        again.mac(b"{\"pin\":\"1234\"}")
    );
    assert_ne!(
        made.mac(b"{\"pin\":\"1234\"}"),
        made.mac(b"{\"pin\":\"1235\"}")
    );
    // Another key, another hash: the value cannot be found without the key.
    let other = dir.path().join("other.key");
    let other = HashKey::load_or_create(&other).unwrap();
    assert_ne!(
        made.mac(b"{\"pin\":\"1234\"}"),
        other.mac(b"{\"pin\":\"1234\"}")
    );
    let shown = format!("{made:?}");
    assert!(
        shown.contains(made.id()) && !shown.contains(&crate::key::hex(&bytes)),
        "{shown}"
    );
    // A file of another length is refused, not used.
    std::fs::write(&path, b"short").unwrap();
    assert!(HashKey::load(&path).is_err());
    assert!(HashKey::load_or_create(&path).is_err());
}

#[test]
fn obs_01_gateways_starting_at_once_share_one_key_and_leave_no_partial_file() {
    use crate::key::{HashKey, SigningKey};
    let dir = tempfile::tempdir().unwrap();
    let hash_path = dir.path().join("audit-hash.key");
    let sign_path = dir.path().join("audit-signing.key");
    let (hash_ids, sign_ids): (Vec<String>, Vec<String>) = std::thread::scope(|s| {
        let runs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (
                        HashKey::load_or_create(&hash_path).unwrap().id().to_owned(),
                        SigningKey::load_or_create(&sign_path)
                            .unwrap()
                            .id()
                            .to_owned(),
                    )
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).unzip()
    });
    assert!(hash_ids.iter().all(|i| *i == hash_ids[0]), "{hash_ids:?}");
    assert!(sign_ids.iter().all(|i| *i == sign_ids[0]), "{sign_ids:?}");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

#[test]
fn obs_01_call_records_written_before_the_keyed_hash_still_read() {
    let old = r#"{"type":"call","session":"ab","principal":"local|me","method":"tools/call",
        "upstream":"files","target":"files__read","arguments_sha256":"00ff","decision":"allow"}"#;
    let e: Event = serde_json::from_str(old).unwrap();
    assert_eq!(e.kind(), "call");
}
