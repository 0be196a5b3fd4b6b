#![allow(clippy::unwrap_used, reason = "tests")]

use super::*;

/// What `sh -c 'ulimit -d; ulimit -t; ulimit -n'` prints under `limits`.
async fn ulimits(limits: Rlimits) -> String {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.args(["-c", "ulimit -d; ulimit -t; ulimit -n"]);
    limits.apply(&mut cmd);
    let out = cmd.output().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn the_child_starts_with_its_limits() {
    let limits = Rlimits {
        memory_bytes: Some(256 * 1024 * 1024),
        cpu_seconds: Some(30),
        open_files: Some(64),
        processes: None,
    };
    // sh reports data in KiB.
    assert_eq!(ulimits(limits).await, "262144\n30\n64\n");
    // None leaves the gateway's own limits.
    let unlimited = ulimits(Rlimits::default()).await;
    assert_ne!(unlimited, "262144\n30\n64\n");
}

#[tokio::test]
async fn a_limit_the_kernel_refuses_fails_the_spawn() {
    // No process, privileged or not, may open more files than fs.nr_open.
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut cmd = tokio::process::Command::new("/bin/true");
    Rlimits {
        open_files: Some(nr_open + 1),
        ..Rlimits::default()
    }
    .apply(&mut cmd);
    let err = cmd.status().await.unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
}

#[test]
fn a_profile_survives_the_launcher_argument() {
    let p = Profile {
        read: vec!["/srv/app".into()],
        write: vec!["/tmp/work dir".into()],
        network: Network::Host,
        syscalls: None,
        rlimits: Rlimits {
            processes: Some(32),
            ..Rlimits::default()
        },
        accept_weaker: [Mechanism::Seccomp].into(),
    };
    assert_eq!(Profile::from_arg(&p.to_arg()).unwrap(), p);
    assert!(Profile::from_arg("{\"read\": [], \"nope\": 1}").is_err());
}

#[test]
fn missing_mechanisms_are_refused_unless_accepted() {
    let weak = Support {
        landlock: Ok(2),
        namespaces: Err("disabled".into()),
        seccomp: Ok(()),
    };
    let strict = Profile::default();
    let r = strict.refusals(&weak);
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r[0].contains("Landlock ABI is 2") && r[0].contains("\"landlock\""));
    assert!(r[1].contains("disabled") && r[1].contains("\"namespaces\""));
    let accepting = Profile {
        accept_weaker: [Mechanism::Landlock, Mechanism::Namespaces].into(),
        network: Network::Host,
        ..Profile::default()
    };
    assert!(accepting.refusals(&weak).is_empty());
    // Without a network namespace there is no network wall: accepting that is for
    // the host's network only.
    let walled = Profile {
        network: Network::None,
        ..accepting.clone()
    };
    let r = walled.refusals(&weak);
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].contains("namespaces"), "{r:?}");
}

#[test]
fn the_strict_allowlist_names_real_system_calls() {
    let ok = Profile {
        syscalls: Some(vec!["read".into(), "write".into(), "exit_group".into()]),
        ..Profile::default()
    };
    ok.validate().unwrap();
    for bad in [
        vec!["read".to_owned(), "no_such_call".to_owned()],
        vec![],
        vec!["re ad".to_owned()],
    ] {
        let p = Profile {
            syscalls: Some(bad.clone()),
            ..Profile::default()
        };
        assert!(p.validate().is_err(), "{bad:?}");
    }
    // The deny-list alone always compiles.
    Profile::default().validate().unwrap();
}

#[test]
fn this_kernel_is_probed() {
    let s = Support::probe_here();
    // Every line of the report names the mechanism.
    let text = s.to_string();
    assert!(
        text.contains("landlock") && text.contains("namespaces") && text.contains("seccomp"),
        "{text}"
    );
    assert_eq!(
        s.missing().len(),
        [
            &s.landlock.is_err(),
            &s.namespaces.is_err(),
            &s.seccomp.is_err()
        ]
        .iter()
        .filter(|x| ***x)
        .count()
            + usize::from(
                s.landlock
                    .as_ref()
                    .is_ok_and(|a| *a < support::MIN_LANDLOCK_ABI)
            )
    );
}
