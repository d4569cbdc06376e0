//! The admin's token file (`var/admin.token`, `--admin-token-file`): written, readable by
//! its owner only, when the first admin is made, and rewritten whenever the token it holds
//! is replaced, so `TOKEN=$(cat var/admin.token)` and Prometheus' `credentials_file` keep
//! working after `trainyard users rotate admin`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `token` to `path` (mode 0600), replacing it atomically: a reader sees the old
/// token or the new one, never half of one.
pub fn write(path: &Path, token: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("token.tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    // N.B.: an existing file keeps its mode through open(); say 0600 again.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    writeln!(f, "{token}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The SHA-256 (as `users::hash_token` makes it) of the token in `path`, if there is one.
pub fn held_hash(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| crate::queue::users::hash_token(token))
}

/// After a user's token changed from the one with `old_hash` to `new_token`: rewrites the
/// file if it held the old one. Whether it did.
pub fn replace_if_held(path: &Path, old_hash: &str, new_token: &str) -> std::io::Result<bool> {
    if held_hash(path).as_deref() != Some(old_hash) {
        return Ok(false);
    }
    write(path, new_token)?;
    Ok(true)
}
