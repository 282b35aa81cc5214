//! `[server] pid_file`: the serving process's pid, for whoever signals it (`kill -USR2 $(cat weir.pid)`), as
//! nginx's `pid` file. Written once the process serves, so that after an upgrade it names the new process;
//! removed at exit only while it still names this one.

use std::io;
use std::path::PathBuf;

/// The file while this process owns it.
pub struct PidFile {
    path: PathBuf,
    pid: String,
}

impl PidFile {
    /// Writes this process's pid, whole or not at all: a reader never sees half a number.
    pub fn write(path: PathBuf) -> io::Result<PidFile> {
        let pid = format!("{}\n", std::process::id());
        let mut partial = path.clone().into_os_string();
        partial.push(".partial");
        std::fs::write(&partial, &pid)?;
        std::fs::rename(&partial, &path)?;
        Ok(PidFile { path, pid })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // After an upgrade the file names the new process, which removes it in its turn.
        if std::fs::read_to_string(&self.path).is_ok_and(|text| text == self.pid) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
