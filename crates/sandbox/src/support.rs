//! What the running kernel offers: probed once, reported at start and by
//! `palisade sandbox check`.

use std::fmt;

use crate::Mechanism;

/// The lowest Landlock ABI the sandbox accepts without `accept_weaker`: ABI 3 is the
/// first that controls truncation, without which a server could empty any file it
/// can reach.
pub const MIN_LANDLOCK_ABI: i32 = 3;

/// The containment mechanisms of the running kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Support {
    /// The Landlock ABI version, or why there is none.
    pub landlock: Result<i32, String>,
    /// Whether an unprivileged process can enter new user, PID, IPC, UTS and network
    /// namespaces, or why not.
    pub namespaces: Result<(), String>,
    /// Whether seccomp filters can be installed, or why not.
    pub seccomp: Result<(), String>,
}

impl Support {
    /// Probes the running kernel with `true(1)` as the namespace probe's program (it
    /// must be one the launcher's user — `nobody`, when the gateway is root — may run).
    pub fn probe_here() -> Self {
        let t = ["/bin/true", "/usr/bin/true"]
            .into_iter()
            .map(std::path::Path::new)
            .find(|p| p.exists())
            .unwrap_or(std::path::Path::new("/bin/true"));
        Self::probe(t, &[])
    }

    /// Probes the running kernel. Safe to call from a multi-threaded process: the
    /// namespace probe runs in a child that executes `probe_program` (any program that
    /// exits 0 at once and that the launcher's user may run).
    pub fn probe(probe_program: &std::path::Path, probe_args: &[&str]) -> Self {
        Self {
            landlock: landlock_abi(),
            namespaces: namespaces(probe_program, probe_args),
            seccomp: seccomp(),
        }
    }

    /// The mechanisms a sandbox would lack, each with why.
    pub fn missing(&self) -> Vec<(Mechanism, String)> {
        let mut out = Vec::new();
        match &self.landlock {
            Ok(abi) if *abi >= MIN_LANDLOCK_ABI => {}
            Ok(abi) => out.push((
                Mechanism::Landlock,
                format!(
                    "the kernel's Landlock ABI is {abi}; {MIN_LANDLOCK_ABI} or later is needed to control file truncation"
                ),
            )),
            Err(why) => out.push((Mechanism::Landlock, format!("Landlock is unavailable: {why}"))),
        }
        if let Err(why) = &self.namespaces {
            out.push((
                Mechanism::Namespaces,
                format!("namespaces are unavailable: {why}"),
            ));
        }
        if let Err(why) = &self.seccomp {
            out.push((Mechanism::Seccomp, format!("seccomp is unavailable: {why}")));
        }
        out
    }
}

impl fmt::Display for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.landlock {
            Ok(abi) => write!(f, "landlock ABI {abi}")?,
            Err(why) => write!(f, "landlock: none ({why})")?,
        }
        match &self.namespaces {
            Ok(()) => write!(f, ", user/pid/ipc/uts/net namespaces")?,
            Err(why) => write!(f, ", namespaces: none ({why})")?,
        }
        match &self.seccomp {
            Ok(()) => write!(f, ", seccomp"),
            Err(why) => write!(f, ", seccomp: none ({why})"),
        }
    }
}

/// The kernel's Landlock ABI version.
pub(crate) fn landlock_abi() -> Result<i32, String> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)` only
    // returns the ABI version (or an error); the kernel reads no memory when the
    // attribute pointer is NULL and the size is 0, and no file descriptor is created.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v >= 1 {
        return i32::try_from(v).map_err(|_| format!("unexpected ABI version {v}"));
    }
    let err = std::io::Error::last_os_error();
    Err(match err.raw_os_error() {
        Some(libc::ENOSYS) => "not built into this kernel".into(),
        Some(libc::EOPNOTSUPP) => "built in but not enabled at boot (lsm=)".into(),
        _ => err.to_string(),
    })
}

/// The namespace flags the launcher asks for (the network one only without the host's
/// network).
pub(crate) fn namespace_flags(network: bool) -> nix::sched::CloneFlags {
    use nix::sched::CloneFlags;
    let mut flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    if network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    flags
}

#[allow(
    clippy::disallowed_methods,
    reason = "a probe child that exits at once, not a server"
)]
fn namespaces(program: &std::path::Path, args: &[&str]) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: runs in the child between fork and exec. Each call is one system call
    // with integer arguments or a borrowed empty slice (`setgroups`, `setresgid`,
    // `setresuid`, `unshare` through nix): async-signal-safe, no allocation, no lock.
    // The child of a fork is single-threaded, as `CLONE_NEWUSER` requires.
    unsafe {
        cmd.pre_exec(|| {
            let err = |e: nix::errno::Errno| std::io::Error::from_raw_os_error(e as i32);
            // The launcher leaves root before it unshares: probe as it will run.
            if nix::unistd::Uid::effective().is_root() {
                let g = nix::unistd::Gid::from_raw(crate::NOBODY);
                let u = nix::unistd::Uid::from_raw(crate::NOBODY);
                nix::unistd::setgroups(&[]).map_err(err)?;
                nix::unistd::setresgid(g, g, g).map_err(err)?;
                nix::unistd::setresuid(u, u, u).map_err(err)?;
            }
            nix::sched::unshare(namespace_flags(true)).map_err(err)
        });
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("the probe exited with {s}")),
        Err(e) => Err(match e.raw_os_error() {
            Some(libc::EPERM) => {
                "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone, user.max_user_namespaces or an LSM)".into()
            }
            Some(libc::EINVAL) => "not built into this kernel".into(),
            Some(libc::ENOSPC) => "the namespace limit is reached (user.max_*_namespaces)".into(),
            _ => e.to_string(),
        }),
    }
}

fn seccomp() -> Result<(), String> {
    // PR_GET_SECCOMP fails with EINVAL on a kernel built without seccomp.
    // SAFETY: `prctl(PR_GET_SECCOMP)` takes no pointers and changes nothing.
    let r = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(())
}
