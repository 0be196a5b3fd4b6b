//! Containment of local (stdio) MCP servers with the kernel's own mechanisms, without
//! a container runtime (OWASP MCP04/MCP09; LOC-01, LOC-02, LOC-05).
//!
//! A sandboxed server is started through a small launcher — the `palisade` binary
//! itself, run as `palisade sandbox exec` — because namespaces and some credential
//! changes need a single-threaded process, which the gateway is not. The launcher, in
//! this order ([`exec`]):
//!
//! 1. prepares everything that allocates or opens paths: the Landlock ruleset (with
//!    the gateway's rights, so that paths it may open can be granted) and the seccomp
//!    filters;
//! 2. when it runs as root, becomes `nobody` (65534): the kernel does not apply
//!    `RLIMIT_NPROC` to root, and a server has no use for root's rights;
//! 3. sets the resource limits ([`Rlimits`]);
//! 4. enters new user, PID, IPC and UTS namespaces, and a new network namespace unless
//!    the profile allows the host's network ([`Network`]); inside, it maps only its own
//!    user and group;
//! 5. forks: the child is PID 1 of the new PID namespace, so every process the server
//!    starts dies with it. The launcher stays outside, forwards signals to it and exits
//!    with its status;
//! 6. the child asks to be killed with its launcher, drops every capability from its
//!    bounding set, sets `no_new_privs`, restricts itself with Landlock (files: only
//!    the profile's paths; TCP bind and connect: none without the host's network;
//!    signals and abstract sockets: only within the sandbox), applies the seccomp
//!    filters, and executes the server.
//!
//! Where the kernel lacks a mechanism ([`Support`]), the launch fails with the reason,
//! unless the profile accepts running without that mechanism ([`Mechanism`]).
//!
//! This is the only crate of the workspace allowed `unsafe`; each block carries a
//! `// SAFETY:` comment.

mod launch;
mod proxy;
mod risk;
mod seccomp;
mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use nix::sys::resource::{Resource, setrlimit};
use serde::{Deserialize, Serialize};

pub use launch::exec;
pub use risk::launch_risks;
pub use seccomp::denied_names;
pub use support::{MIN_LANDLOCK_ABI, Support};

/// The user and group a launcher started as root runs the server as.
pub const NOBODY: u32 = 65534;

/// Exit status of the launcher when the sandbox cannot be set up (the reason is on
/// its stderr); the server never ran.
pub const EXIT_SETUP_FAILED: i32 = 125;

/// What a server may do, and which missing mechanisms the operator accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Paths (and everything beneath them) the server may read and execute, besides
    /// the system's runtime paths ([`SYSTEM_READ`]).
    pub read: Vec<PathBuf>,
    /// Paths the server may also write, create and remove files in.
    pub write: Vec<PathBuf>,
    /// Its network.
    pub network: Network,
    /// When set, the only system calls the server may make (a strict allowlist);
    /// the deny-list applies as well.
    pub syscalls: Option<Vec<String>>,
    /// Resource limits.
    pub rlimits: Rlimits,
    /// Mechanisms the server may run without where the kernel lacks them.
    pub accept_weaker: BTreeSet<Mechanism>,
}

/// Read-only paths every sandboxed server gets, where they exist: programs, shared
/// libraries, the loader's cache, TLS roots, name resolution and time zones.
pub const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/usr/share/zoneinfo",
];

/// Device files every sandboxed server may read and write.
pub const SYSTEM_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// A server's network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// A fresh network namespace with no interface up, and no TCP bind or connect.
    #[default]
    None,
    /// The host's network, unrestricted.
    Host,
    /// A fresh network namespace whose only way out is an HTTP proxy on
    /// `127.0.0.1:port` inside it, which the launcher forwards to the UNIX socket
    /// `socket` (where the gateway's egress proxy decides which hosts may be
    /// reached). TCP connect only to that port; no bind.
    Proxy {
        /// The gateway's egress proxy.
        socket: PathBuf,
        /// The proxy's port inside the sandbox.
        port: u16,
    },
}

/// A containment mechanism the kernel may lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// Landlock, ABI 3 or later (file access including truncation).
    Landlock,
    /// User, PID, IPC, UTS and network namespaces.
    Namespaces,
    /// Seccomp filters.
    Seccomp,
}

impl Mechanism {
    /// Every mechanism.
    pub const ALL: [Mechanism; 3] = [Self::Landlock, Self::Namespaces, Self::Seccomp];

    /// Its name in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Self::Landlock => "landlock",
            Self::Namespaces => "namespaces",
            Self::Seccomp => "seccomp",
        }
    }

    /// The mechanism of that name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Resource limits for one child; `None` leaves a limit as the gateway has it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rlimits {
    /// Bytes of data segment and private writable memory (`RLIMIT_DATA`).
    pub memory_bytes: Option<u64>,
    /// Seconds of CPU time (`RLIMIT_CPU`).
    pub cpu_seconds: Option<u64>,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
    /// Processes and threads (`RLIMIT_NPROC`); set after the sandbox's own user
    /// namespace exists, so that it counts the sandbox's processes, not the user's
    /// (and never applies to root, which the launcher therefore leaves).
    pub processes: Option<u64>,
}

impl Rlimits {
    /// Whether any limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Makes `cmd`'s child set these limits on itself before it executes the program
    /// (for a server that runs without the sandbox). A limit the kernel refuses (above
    /// the gateway's own hard limit) fails the spawn, with that error: the server does
    /// not start unlimited.
    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        if self.is_empty() {
            return;
        }
        let limits = *self;
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe work is allowed. It captures plain integers (`Copy`), and
        // calls only `setrlimit(2)` through nix, which builds a `libc::rlimit` on the
        // stack and makes the system call: no allocation, no lock, no panic path.
        // Errors become `io::Error::from_raw_os_error`, which does not allocate.
        unsafe {
            cmd.pre_exec(move || limits.set());
        }
    }

    /// Sets the limits on the calling process; soft and hard alike, so that they
    /// cannot be raised again.
    pub(crate) fn set(self) -> std::io::Result<()> {
        for (resource, value) in [
            (Resource::RLIMIT_DATA, self.memory_bytes),
            (Resource::RLIMIT_CPU, self.cpu_seconds),
            (Resource::RLIMIT_NOFILE, self.open_files),
            (Resource::RLIMIT_NPROC, self.processes),
        ] {
            if let Some(v) = value {
                setrlimit(resource, v, v)
                    .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
            }
        }
        Ok(())
    }
}

impl Profile {
    /// The profile as the launcher's `--profile` argument.
    pub fn to_arg(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The profile from the launcher's `--profile` argument.
    pub fn from_arg(arg: &str) -> Result<Self, String> {
        serde_json::from_str(arg).map_err(|e| format!("sandbox profile: {e}"))
    }

    /// Why this profile cannot be enforced with what the kernel offers and the profile
    /// does not accept to miss: one line per missing mechanism; empty when it can.
    pub fn refusals(&self, support: &Support) -> Vec<String> {
        support
            .missing()
            .into_iter()
            // No network wall without a network namespace: accepting their absence
            // is for `network = "host"` only.
            .filter(|(m, _)| {
                !self.accept_weaker.contains(m)
                    || (*m == Mechanism::Namespaces && self.network != Network::Host)
            })
            .map(|(m, why)| {
                format!(
                    "{why}; add \"{}\" to `accept_weaker` to run without it",
                    m.name()
                )
            })
            .collect()
    }

    /// Checks what can be checked before a launch: the strict allowlist's system
    /// call names.
    pub fn validate(&self) -> Result<(), String> {
        seccomp::filters(self).map(|_| ())
    }
}

#[cfg(test)]
mod tests;
