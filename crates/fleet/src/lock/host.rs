//! Machine-wide account guards: one `imapfleet` process at a time per destination account on
//! this machine, whatever the command (`sync`, `run`) and whether or not it keeps saved state.
//!
//! The in-process locks ([`super::MemoryLocks`]) only see their own process, and two processes
//! appending into the same host2 folders at once both copy what they find missing: duplicates.
//! A guard is an advisory lock (`flock`, via `std::fs::File::try_lock`) on a file named by a
//! digest of the host2 account, in a directory every process of this OS user shares. The OS drops
//! it when the process ends, even on `kill -9`, so a guard can never be left stuck. Fleet workers
//! on several machines are kept apart by the Redis leases instead; this guard is for one machine.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Why a guard could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// Another process holds it.
    #[error(
        "another imapfleet process on this machine is syncing into {account} (lock {}); \
         wait for it to finish, or stop it",
        path.display()
    )]
    Busy { account: String, path: PathBuf },
    #[error("account lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A held guard; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct AccountGuard {
    _file: File,
    path: PathBuf,
}

impl AccountGuard {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The directory of the guards: `$IMAPFLEET_LOCK_DIR`, else `imapfleet-locks-<uid>` in the
/// system's temporary directory (per OS user: the files are private to their owner).
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("IMAPFLEET_LOCK_DIR") {
        return PathBuf::from(d);
    }
    #[cfg(unix)]
    let who = {
        use std::os::unix::fs::MetadataExt;
        // The owner of /proc/self is this process's user (Linux).
        std::fs::metadata("/proc/self")
            .map(|m| m.uid().to_string())
            .unwrap_or_else(|_| "user".into())
    };
    #[cfg(not(unix))]
    let who = "user".to_string();
    std::env::temp_dir().join(format!("imapfleet-locks-{who}"))
}

/// The guard file of a host2 account (host case-insensitive; user as given).
pub fn guard_path(dir: &Path, host2: &str, port2: u16, user2: &str) -> PathBuf {
    let mut h = Sha256::new();
    h.update(host2.to_ascii_lowercase().as_bytes());
    h.update([0]);
    h.update(port2.to_be_bytes());
    h.update([0]);
    h.update(user2.as_bytes());
    dir.join(format!("{}.lock", &hex::encode(h.finalize())[..32]))
}

/// Take the guard of the host2 account `user2@host2:port2` in `dir`, without waiting.
pub fn try_guard(
    dir: &Path,
    host2: &str,
    port2: u16,
    user2: &str,
) -> Result<AccountGuard, GuardError> {
    let path = guard_path(dir, host2, port2, user2);
    let io = |source| GuardError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(AccountGuard { _file: file, path }),
        Err(TryLockError::WouldBlock) => Err(GuardError::Busy {
            account: format!("{user2}@{host2}:{port2}"),
            path,
        }),
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("imapfleet-guard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn one_holder_per_account_released_on_drop() {
        let d = dir("one");
        let g = try_guard(&d, "Mail.Example.org", 993, "alice").expect("first");
        // The same account (host in another case) is busy, even through another open file.
        match try_guard(&d, "mail.example.org", 993, "alice") {
            Err(GuardError::Busy { account, path }) => {
                assert_eq!(account, "alice@mail.example.org:993");
                assert_eq!(path, g.path());
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        // Other accounts, ports and users are free.
        let _b = try_guard(&d, "mail.example.org", 993, "bob").expect("another user");
        let _c = try_guard(&d, "mail.example.org", 143, "alice").expect("another port");
        drop(g);
        try_guard(&d, "mail.example.org", 993, "alice").expect("free again after drop");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn guard_names_do_not_show_the_account() {
        let p = guard_path(Path::new("/x"), "host", 1, "secret-user@example.org");
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.contains("secret") && name.ends_with(".lock"),
            "{name}"
        );
        assert_eq!(name.len(), 32 + 5);
    }

    /// The guard is held across processes: a child process that tries the same account fails.
    #[test]
    fn a_second_process_is_refused() {
        let d = dir("proc");
        let _g = try_guard(&d, "h", 1, "u").expect("guard");
        let path = guard_path(&d, "h", 1, "u");
        let out = std::process::Command::new("flock")
            .args(["--nonblock", "--conflict-exit-code", "75"])
            .arg(&path)
            .arg("true")
            .output()
            .expect("flock(1) from util-linux");
        assert_eq!(out.status.code(), Some(75), "{out:?}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
