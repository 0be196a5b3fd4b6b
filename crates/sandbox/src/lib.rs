//! Containment of local (stdio) MCP servers with the kernel's own mechanisms, without
//! a container runtime (OWASP MCP04/MCP09, LOC-*).
//!
//! Today: resource limits. [`Rlimits::apply`] arranges for the child to lower its own
//! limits between `fork` and `exec`, so the server never runs a single instruction
//! without them: the data segment and private writable mappings (`RLIMIT_DATA`), CPU
//! time (`RLIMIT_CPU`: SIGXCPU at the limit, SIGKILL a second later) and open file
//! descriptors (`RLIMIT_NOFILE`). Soft and hard limits are set alike, so the child
//! cannot raise them again.
//!
//! This is the only crate of the workspace allowed `unsafe`; each block carries a
//! `// SAFETY:` comment.

use nix::sys::resource::{Resource, setrlimit};

/// Resource limits for one child; `None` leaves a limit as the gateway has it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rlimits {
    /// Bytes of data segment and private writable memory (`RLIMIT_DATA`).
    pub memory_bytes: Option<u64>,
    /// Seconds of CPU time (`RLIMIT_CPU`).
    pub cpu_seconds: Option<u64>,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
}

impl Rlimits {
    /// Whether any limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Makes `cmd`'s child set these limits on itself before it executes the program.
    /// A limit the kernel refuses (above the gateway's own hard limit) fails the
    /// spawn, with that error: the server does not start unlimited.
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
            cmd.pre_exec(move || limits.set_in_child());
        }
    }

    /// Sets the limits on the calling process (the child, before exec).
    fn set_in_child(self) -> std::io::Result<()> {
        for (resource, value) in [
            (Resource::RLIMIT_DATA, self.memory_bytes),
            (Resource::RLIMIT_CPU, self.cpu_seconds),
            (Resource::RLIMIT_NOFILE, self.open_files),
        ] {
            if let Some(v) = value {
                setrlimit(resource, v, v)
                    .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(err.raw_os_error(), Some(nix::libc::EPERM), "{err}");
    }
}
