//! The seccomp filters of a sandboxed server: a deny-list that every profile gets, and
//! an optional strict allowlist.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::Profile;

/// System calls no MCP server needs and that widen the kernel's attack surface or
/// reach outside the sandbox: debugging other processes, mounting, loading kernels,
/// modules and BPF programs, the kernel keyring, new namespaces, setting the clock,
/// `io_uring` (whose operations bypass seccomp), and handles that open files by
/// inode. They fail with `EPERM`.
const DENIED: &[(&str, libc::c_long)] = &[
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("kcmp", libc::SYS_kcmp),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("syslog", libc::SYS_syslog),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    ("sethostname", libc::SYS_sethostname),
    ("setdomainname", libc::SYS_setdomainname),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("vhangup", libc::SYS_vhangup),
    #[cfg(target_arch = "x86_64")]
    ("iopl", libc::SYS_iopl),
    #[cfg(target_arch = "x86_64")]
    ("ioperm", libc::SYS_ioperm),
];

/// `clone` flags that create namespaces: refused like `unshare`.
const NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    0x80, // CLONE_NEWTIME
];

fn arch() -> Result<TargetArch, String> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|_| format!("seccomp: no filter for {}", std::env::consts::ARCH))
}

fn compile(filter: SeccompFilter) -> Result<BpfProgram, String> {
    filter.try_into().map_err(|e| format!("seccomp: {e}"))
}

/// The programs to install, in order: the deny-list, `clone3` (which must fail with
/// `ENOSYS` so that the C library falls back to `clone`, whose flags a filter can
/// read), and the strict allowlist when the profile has one.
pub(crate) fn filters(profile: &Profile) -> Result<Vec<BpfProgram>, String> {
    let arch = arch()?;
    let mut denied: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|(_, nr)| (*nr, Vec::new())).collect();
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .and_then(|c| SeccompRule::new(vec![c]))
            .map_err(|e| format!("seccomp: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    denied.insert(libc::SYS_clone, clone_rules);
    // UNIX-domain sockets reach local services by path (the session bus, the Docker
    // socket, agents, other sandboxes' doors) across network namespaces, and Landlock
    // (below ABI 9) does not govern connecting to them. `socketpair` stays allowed.
    denied.insert(
        libc::SYS_socket,
        vec![
            SeccompCondition::new(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                libc::AF_UNIX as u64,
            )
            .and_then(|c| SeccompRule::new(vec![c]))
            .map_err(|e| format!("seccomp: {e}"))?,
        ],
    );
    let deny = SeccompFilter::new(
        denied,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| format!("seccomp: {e}"))?;
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| format!("seccomp: {e}"))?;
    let mut out = vec![compile(deny)?, compile(clone3)?];
    if let Some(allowed) = &profile.syscalls {
        out.push(allowlist(allowed, arch)?);
    }
    Ok(out)
}

/// Only the named system calls; everything else fails with `EPERM`. Names are the
/// kernel's (`read`, `openat`, …) and are resolved for this architecture.
fn allowlist(names: &[String], arch: TargetArch) -> Result<BpfProgram, String> {
    if names.is_empty() {
        return Err("seccomp: the strict allowlist (`syscalls`) is empty".into());
    }
    if let Some(bad) = names
        .iter()
        .find(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        return Err(format!("seccomp: `{bad}` is not a system call name"));
    }
    let doc = serde_json::json!({
        "allow": {
            "mismatch_action": {"errno": libc::EPERM},
            "filter_action": "allow",
            "filter": names.iter().map(|n| serde_json::json!({"syscall": n})).collect::<Vec<_>>(),
        }
    });
    let mut map = seccompiler::compile_from_json(doc.to_string().as_bytes(), arch)
        .map_err(|e| format!("seccomp: strict allowlist: {e}"))?;
    map.remove("allow")
        .ok_or_else(|| "seccomp: strict allowlist did not compile".into())
}

/// Installs `programs` on the calling thread (the launcher's child, single-threaded,
/// with `no_new_privs` already set).
pub(crate) fn install(programs: &[BpfProgram]) -> Result<(), String> {
    for p in programs {
        seccompiler::apply_filter(p).map_err(|e| format!("seccomp: {e}"))?;
    }
    Ok(())
}

/// The names of the system calls every profile denies, for documentation and
/// `palisade sandbox check`.
pub fn denied_names() -> impl Iterator<Item = &'static str> {
    DENIED.iter().map(|(n, _)| *n).chain([
        "clone (with namespace flags)",
        "clone3 (ENOSYS)",
        "socket (AF_UNIX)",
    ])
}
