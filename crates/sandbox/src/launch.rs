//! The launcher: `palisade sandbox exec --profile JSON -- PROGRAM ARGS…`, run by the
//! gateway for each sandboxed stdio server. It must run single-threaded (it is called
//! before any runtime starts), because `unshare(CLONE_NEWUSER)` and `fork` need that.

use std::convert::Infallible;
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, PathBeneath, PathFd, RestrictionStatus, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid};
use seccompiler::BpfProgram;

use crate::support::{MIN_LANDLOCK_ABI, landlock_abi, namespace_flags};
use crate::{EXIT_SETUP_FAILED, Mechanism, NOBODY, Network, Profile, SYSTEM_DEVICES, SYSTEM_READ};

/// The Landlock ABI whose rights the sandbox asks for; older kernels enforce the
/// subset they know (and [`MIN_LANDLOCK_ABI`] is the least accepted by default).
const TARGET_ABI: ABI = ABI::V6;

/// Signals the launcher passes on to the server.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Runs `program` with `args` inside the sandbox `profile` describes, and exits with
/// its status. Never returns: a sandbox that cannot be set up ends the launcher with
/// [`EXIT_SETUP_FAILED`] and the reason on stderr, before the server runs at all.
///
/// Call it only from a single-threaded process.
#[allow(
    clippy::disallowed_methods,
    reason = "the launcher ends with the server's status; it holds nothing to drain"
)]
pub fn exec(profile: &Profile, program: &Path, args: &[OsString]) -> ! {
    let Err(why) = launch(profile, program, args);
    eprintln!("palisade sandbox: {why}");
    std::process::exit(EXIT_SETUP_FAILED)
}

#[allow(
    clippy::disallowed_methods,
    reason = "the launcher ends with the server's status; it holds nothing to drain"
)]
fn launch(profile: &Profile, program: &Path, args: &[OsString]) -> Result<Infallible, String> {
    let accepts = |m: Mechanism| profile.accept_weaker.contains(&m);
    // 1. Everything that opens paths or allocates, with the launcher's own rights.
    let ruleset = match landlock_abi() {
        Ok(abi) if abi >= MIN_LANDLOCK_ABI || accepts(Mechanism::Landlock) => {
            Some(ruleset(profile, program)?)
        }
        Ok(abi) => {
            return Err(format!(
                "the kernel's Landlock ABI is {abi}, {MIN_LANDLOCK_ABI} or later is needed \
                 (accept_weaker = [\"landlock\"] runs the server with less)"
            ));
        }
        Err(_) if accepts(Mechanism::Landlock) => None,
        Err(why) => return Err(format!("Landlock is unavailable: {why}")),
    };
    let filters = crate::seccomp::filters(profile)?;
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("/dev/null: {e}"))?;

    // 2. Never run a server as root.
    if Uid::effective().is_root() {
        let nobody_g = Gid::from_raw(NOBODY);
        let nobody_u = Uid::from_raw(NOBODY);
        nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
        nix::unistd::setresgid(nobody_g, nobody_g, nobody_g)
            .map_err(|e| format!("setresgid: {e}"))?;
        nix::unistd::setresuid(nobody_u, nobody_u, nobody_u)
            .map_err(|e| format!("setresuid: {e}"))?;
        // A change of credentials makes the process undumpable, which makes its
        // /proc files root's: the maps below could not be written.
        nix::sys::prctl::set_dumpable(true).map_err(|e| format!("set_dumpable: {e}"))?;
    }

    // 3. Resource limits (inherited by the server). The process count comes after
    // the user namespace exists: the kernel records the creator's RLIMIT_NPROC as the
    // limit of the user's processes OUTSIDE the namespace, which must stay the user's.
    let mut early = profile.rlimits;
    early.processes = None;
    early.set().map_err(|e| format!("resource limits: {e}"))?;

    // 4. Namespaces.
    let (uid, gid) = (Uid::effective(), Gid::effective());
    let namespaced = match nix::sched::unshare(namespace_flags(profile.network != Network::Host)) {
        Ok(()) => {
            map_ids(uid, gid)?;
            true
        }
        Err(e) if matches!(profile.network, Network::Proxy { .. }) => {
            // Without a network namespace the proxy would be one door among many.
            return Err(format!(
                "cannot enter new namespaces, which the egress proxy needs: {e}"
            ));
        }
        // Without a network namespace, only the host's network can be honest.
        Err(e) if accepts(Mechanism::Namespaces) && profile.network == Network::Host => {
            eprintln!("palisade sandbox: running without namespaces (accepted): {e}");
            false
        }
        Err(e) => return Err(format!("cannot enter new namespaces: {e}")),
    };
    crate::Rlimits {
        processes: profile.rlimits.processes,
        ..crate::Rlimits::default()
    }
    .set()
    .map_err(|e| format!("process limit: {e}"))?;

    // 5. Fork: the child is PID 1 of the new PID namespace. Signals that the launcher
    // forwards are blocked first, so none is lost between the fork and the wait.
    let mut blocked = SigSet::empty();
    blocked.add(Signal::SIGCHLD);
    for s in FORWARDED {
        blocked.add(s);
    }
    blocked
        .thread_block()
        .map_err(|e| format!("sigprocmask: {e}"))?;
    let (alive_r, alive_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    // The proxy's door inside the new network namespace, open before the server runs.
    let door = match &profile.network {
        Network::Proxy { socket, port } => Some((crate::proxy::open(*port)?, socket.clone())),
        _ => None,
    };
    // SAFETY: the launcher is single-threaded (it is called before any runtime or
    // thread starts, as `exec` documents), so the child is a complete copy with no
    // lock held by a vanished thread; it may allocate and run ordinary code.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(alive_w);
            drop(door);
            let Err(why) = child(
                profile, program, args, ruleset, filters, namespaced, alive_r,
            );
            eprintln!("palisade sandbox: {why}");
            std::process::exit(EXIT_SETUP_FAILED)
        }
        ForkResult::Parent { child } => {
            drop(alive_r);
            if let Some((listener, socket)) = door {
                // A process that has unshared its PID namespace cannot start threads,
                // so the door runs in a second child, inside the new PID namespace
                // (where the server is PID 1: the door dies with it).
                // SAFETY: the launcher is still single-threaded (see above).
                match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
                    ForkResult::Child => {
                        drop(alive_w);
                        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
                        // Not the server's stdin or stdout.
                        let _ = nix::unistd::dup2_stdin(devnull.as_fd());
                        let _ = nix::unistd::dup2_stdout(devnull.as_fd());
                        crate::proxy::forward(listener, socket);
                        std::process::exit(0)
                    }
                    ForkResult::Parent { .. } => drop(listener),
                }
            }
            monitor(child, &blocked, &devnull, alive_w)
        }
    }
}

/// Maps the launcher's own user and group into its new user namespace: the only
/// mapping an unprivileged process may write, and the only identity the server has.
fn map_ids(uid: Uid, gid: Gid) -> Result<(), String> {
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text).map_err(|e| format!("{file}: {e}"))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("{uid} {uid} 1"))?;
    write("gid_map", format!("{gid} {gid} 1"))
}

/// The launcher after the fork: passes signals on to the server and exits with its
/// status. It holds no end of the server's stdin or stdout.
#[allow(
    clippy::disallowed_methods,
    reason = "the launcher ends with the server's status; it holds nothing to drain"
)]
fn monitor(child: Pid, blocked: &SigSet, devnull: &std::fs::File, alive: OwnedFd) -> ! {
    let _ = nix::unistd::dup2_stdin(devnull.as_fd());
    let _ = nix::unistd::dup2_stdout(devnull.as_fd());
    loop {
        match blocked.wait() {
            // Every child is reaped (the proxy door too: the server, PID 1 of its
            // namespace, cannot finish exiting while a zombie of it remains); the
            // server's status ends the launcher.
            Ok(Signal::SIGCHLD) => loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == child => {
                        drop(alive);
                        std::process::exit(code)
                    }
                    Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                        drop(alive);
                        std::process::exit(128 + sig as i32)
                    }
                    Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                    Ok(_) => continue,
                    Err(_) => std::process::exit(EXIT_SETUP_FAILED),
                }
            },
            Ok(sig) => pass_on(child, sig),
            Err(_) => {}
        }
    }
}

/// Passes `sig` on to the server. As PID 1 of its namespace, the server receives only
/// signals it handles, so one it neither handles nor ignores gets its default effect
/// here — for every forwarded signal, termination — by SIGKILL.
fn pass_on(child: Pid, sig: Signal) {
    let mask = |field: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{child}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(field))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(0)
    };
    let bit = 1u64 << (sig as i32 - 1);
    if mask("SigCgt:") & bit != 0 {
        let _ = kill(child, sig);
    } else if mask("SigIgn:") & bit == 0 {
        let _ = kill(child, Signal::SIGKILL);
    }
}

/// The server's side of the fork: the last restrictions, then `exec`. Returns only
/// with the reason it could not.
fn child(
    profile: &Profile,
    program: &Path,
    args: &[OsString],
    ruleset: Option<RulesetCreated>,
    filters: Vec<BpfProgram>,
    namespaced: bool,
    alive: OwnedFd,
) -> Result<Infallible, String> {
    // Die with the launcher; and if it is already gone, do not start.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("pdeathsig: {e}"))?;
    let mut fds = [nix::poll::PollFd::new(
        alive.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    if nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0) {
        return Err("the launcher went away before the server started".into());
    }
    drop(alive);
    SigSet::empty()
        .thread_set_mask()
        .map_err(|e| format!("sigprocmask: {e}"))?;
    drop_capabilities(namespaced)?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    if let Some(ruleset) = ruleset {
        let status = ruleset
            .restrict_self()
            .map_err(|e| format!("landlock: {e}"))?;
        check_landlock(&status, profile)?;
    }
    match crate::seccomp::install(&filters) {
        Ok(()) => {}
        Err(why) if profile.accept_weaker.contains(&Mechanism::Seccomp) => {
            eprintln!("palisade sandbox: running without seccomp (accepted): {why}");
        }
        Err(why) => return Err(why),
    }
    let err = std::process::Command::new(program).args(args).exec();
    Err(format!("cannot execute {}: {err}", program.display()))
}

/// Empties the capability bounding and ambient sets. In its own user namespace the
/// child holds every capability there until it executes the server (as a user other
/// than root, which drops them); emptying the bounding set makes sure nothing, not
/// even a file capability, brings one back.
fn drop_capabilities(namespaced: bool) -> Result<(), String> {
    let last: libc::c_ulong = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    for cap in 0..=last {
        // SAFETY: `prctl(PR_CAPBSET_DROP, cap)` takes an integer and no pointer.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        // Without a namespace the process holds no capability (it is not root), so it
        // may not change the set (EPERM), and has nothing to drop.
        if r != 0 && namespaced {
            return Err(format!(
                "dropping capability {cap}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    // SAFETY: `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)` takes integers only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    Ok(())
}

/// A ruleset the kernel did not enforce at all is refused unless accepted.
fn check_landlock(status: &RestrictionStatus, profile: &Profile) -> Result<(), String> {
    if status.ruleset == RulesetStatus::NotEnforced
        && !profile.accept_weaker.contains(&Mechanism::Landlock)
    {
        return Err("the kernel did not enforce the Landlock ruleset".into());
    }
    Ok(())
}

/// The Landlock ruleset: read (and execute) the system's runtime paths, the program
/// and the profile's `read` paths; read and write the profile's `write` paths and the
/// harmless devices; nothing else. Without the host's network, no TCP bind or
/// connect. Signals and abstract UNIX sockets reach only the sandbox.
fn ruleset(profile: &Profile, program: &Path) -> Result<RulesetCreated, String> {
    let e = |e: landlock::RulesetError| format!("landlock: {e}");
    let mut rs = Ruleset::default()
        .handle_access(AccessFs::from_all(TARGET_ABI))
        .map_err(e)?
        .scope(Scope::from_all(TARGET_ABI))
        .map_err(e)?;
    if profile.network != Network::Host {
        rs = rs
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(e)?;
    }
    let mut created = rs.create().map_err(e)?;
    if let Network::Proxy { port, .. } = &profile.network {
        created = created
            .add_rule(landlock::NetPort::new(*port, AccessNet::ConnectTcp))
            .map_err(e)?;
    }
    let read = AccessFs::from_read(TARGET_ABI);
    let all = AccessFs::from_all(TARGET_ABI);
    let device = AccessFs::ReadFile | AccessFs::WriteFile;
    let mut grants: Vec<(&Path, landlock::BitFlags<AccessFs>, bool)> = Vec::new();
    for p in SYSTEM_READ {
        grants.push((Path::new(p), read, false));
    }
    for p in SYSTEM_DEVICES {
        grants.push((Path::new(p), device, false));
    }
    grants.push((program, read, true));
    for p in &profile.read {
        grants.push((p, read, true));
    }
    for p in &profile.write {
        grants.push((p, all, true));
    }
    for (path, access, required) in grants {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(_) if !required => continue,
            Err(err) => return Err(format!("sandbox path {}: {err}", path.display())),
        };
        let access = if meta.is_dir() {
            access
        } else {
            access & AccessFs::from_file(TARGET_ABI)
        };
        let fd =
            PathFd::new(path).map_err(|err| format!("sandbox path {}: {err}", path.display()))?;
        created = created.add_rule(PathBeneath::new(fd, access)).map_err(e)?;
    }
    Ok(created)
}
