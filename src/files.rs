//! Bounded reads of files that come from outside the process: the config,
//! the state file, and every secret (credentials, tokens, passwords). A file
//! above its cap is refused with a clear error before it is read whole, so a
//! huge or endless file (a FIFO, `/dev/zero`) cannot exhaust memory.
//!
//! This module imports nothing else from the crate.

use std::io::{self, Read};
use std::path::Path;

/// The largest secret file read: credentials, tokens, passwords.
pub(crate) const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Reads `path` whole, refusing a file larger than `max` bytes with an
/// [`io::ErrorKind::FileTooLarge`] error that names the cap.
pub(crate) fn read_capped(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than the {max} bytes accepted"),
        ));
    }
    Ok(bytes)
}

/// Reads a text file of at most `max` bytes.
pub(crate) fn read_text_capped(path: &Path, max: u64) -> io::Result<String> {
    String::from_utf8(read_capped(path, max)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Reads a secret file (at most [`MAX_SECRET_BYTES`]), trimmed of
/// surrounding white space.
pub(crate) fn read_secret(path: &Path) -> io::Result<String> {
    Ok(read_text_capped(path, MAX_SECRET_BYTES)?.trim().to_string())
}

/// Whether a file's permission bits let its group or others read it.
pub(crate) fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_refuse_big_files_and_read_small_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_capped(&path, 10).unwrap(), b"0123456789");
        let e = read_capped(&path, 9).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert!(e.to_string().contains("9 bytes"), "{e}");
        std::fs::write(&path, "  token\n").unwrap();
        assert_eq!(read_secret(&path).unwrap(), "token");
        // An endless source is cut at the cap, never read whole.
        let e = read_capped(Path::new("/dev/zero"), 1024).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
    }

    #[test]
    fn group_or_world_readable_files_are_noticed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!readable_by_others(&path));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(readable_by_others(&path));
    }
}
