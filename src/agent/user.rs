//! Whom an agent's tasks run as. An agent started as root runs them as the user named by
//! `--run-as`, so that a task can read neither the agent's nor the server's memory,
//! environment or state dir; running them as root is an explicit `--run-as root`.

use std::ffi::{CStr, CString};

use anyhow::bail;

/// An unprivileged user the tasks run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// The user tasks run as, from `--run-as` and this process's effective user: `None`
/// when they run as the agent itself. Refuses root without an explicit `--run-as root`,
/// and a switch of user that needs a privilege the agent lacks.
pub fn for_agent(run_as: Option<&str>) -> anyhow::Result<Option<TaskUser>> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let Some(name) = run_as else {
        if euid == 0 {
            bail!(
                "the agent runs as root, and its tasks would too: pass --run-as USER to run \
                 them as an unprivileged user, or --run-as root to run them as root"
            );
        }
        return Ok(None);
    };
    let user = lookup(name)?;
    if user.uid == euid {
        if euid == 0 {
            tracing::warn!("tasks run as root (--run-as root)");
        }
        return Ok(None);
    }
    if euid != 0 {
        bail!(
            "--run-as {name}: running tasks as another user needs root; the agent runs as uid {euid}"
        );
    }
    Ok(Some(user))
}

/// The passwd entry of `name` (a user name, or a numeric uid).
pub fn lookup(name: &str) -> anyhow::Result<TaskUser> {
    let Ok(c_name) = CString::new(name) else {
        bail!("--run-as {name:?}: not a user name");
    };
    // SAFETY: `pwd` and `buf` outlive the call; getpwnam_r/getpwuid_r write the entry's
    // strings into `buf` and point `pwd`'s fields into it, and set `found` to `pwd` or null.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = match name.parse::<u32>() {
            Ok(uid) => libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found),
            Err(_) => libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            ),
        };
        if rc != 0 {
            bail!(
                "--run-as {name}: looking the user up: {}",
                std::io::Error::from_raw_os_error(rc)
            );
        }
        if found.is_null() {
            bail!("--run-as {name}: no such user");
        }
        let text = |p: *const libc::c_char| {
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        Ok(TaskUser {
            name: text(pwd.pw_name),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
            home: text(pwd.pw_dir),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_found_by_name_and_by_uid_and_unknown_ones_named() {
        let root = lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(lookup("0").unwrap().name, "root");
        let err = lookup("no-such-user-flotilla").unwrap_err().to_string();
        assert!(err.contains("no such user"), "{err}");
        let err = lookup("a\0b").unwrap_err().to_string();
        assert!(err.contains("not a user name"), "{err}");
    }

    #[test]
    fn root_needs_an_explicit_choice_and_others_cannot_switch() {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid == 0 {
            let err = for_agent(None).unwrap_err().to_string();
            assert!(err.contains("--run-as USER"), "{err}");
            assert_eq!(for_agent(Some("root")).unwrap(), None);
            let nobody = for_agent(Some("nobody")).unwrap().unwrap();
            assert_ne!(nobody.uid, 0);
        } else {
            assert_eq!(for_agent(None).unwrap(), None);
            let err = for_agent(Some("root")).unwrap_err().to_string();
            assert!(err.contains("needs root"), "{err}");
        }
    }
}
