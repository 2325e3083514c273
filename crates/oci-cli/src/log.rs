//! Errors and messages in runc's log formats. containerd reads the last `"level":"error"` line's
//! `msg` from the `--log` file to report why the runtime failed, so the field names matter.

use crate::cli::LogFormat;
use std::io::Write;
use std::path::PathBuf;

pub struct Logger {
    file: Option<PathBuf>,
    format: LogFormat,
    debug: bool,
}

impl Logger {
    pub fn new(file: Option<PathBuf>, format: LogFormat, debug: bool) -> Logger {
        Logger { file, format, debug }
    }

    pub fn error(&self, message: &str) {
        self.write("error", message);
        // The caller's terminal gets it too: conmon and humans read stderr.
        eprintln!("berth-oci: {message}");
    }

    pub fn warn(&self, message: &str) {
        self.write("warning", message);
        if self.file.is_none() {
            eprintln!("berth-oci: warning: {message}");
        }
    }

    pub fn debug(&self, message: &str) {
        if self.debug {
            self.write("debug", message);
        }
    }

    fn write(&self, level: &str, message: &str) {
        let Some(path) = &self.file else { return };
        let time = berth_oci::time::rfc3339_now();
        let line = match self.format {
            LogFormat::Json => serde_json::json!({ "level": level, "msg": message, "time": time }).to_string(),
            LogFormat::Text => format!("time={time:?} level={level} msg={message:?}"),
        };
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(file, "{line}");
        }
    }
}
