//! The live progress line on a terminal: messages and bytes copied, rate and ETA.
//! Only shown when stderr is a terminal; `--quiet` turns it off.

use std::sync::atomic::{AtomicU64, Ordering};

use imapfleet_sync::engine::Progress;
use imapfleet_sync::report::FolderReport;
use indicatif::{ProgressBar, ProgressStyle};

/// An indicatif bar over the bytes planned so far (it grows as folders are planned).
pub struct Bar {
    bar: ProgressBar,
    folders_total: AtomicU64,
    folders_done: AtomicU64,
    messages: AtomicU64,
}

impl Bar {
    pub fn new() -> Bar {
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(std::time::Duration::from_millis(250));
        Bar {
            bar,
            folders_total: AtomicU64::new(0),
            folders_done: AtomicU64::new(0),
            messages: AtomicU64::new(0),
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn refresh(&self) {
        self.bar.set_message(format!(
            "{} msgs, folders {}/{}",
            self.messages.load(Ordering::Relaxed),
            self.folders_done.load(Ordering::Relaxed),
            self.folders_total.load(Ordering::Relaxed)
        ));
    }
}

impl Progress for Bar {
    fn totals_known(&self, folders: usize) {
        self.folders_total.store(folders as u64, Ordering::Relaxed);
        self.refresh();
    }

    fn folder_planned(&self, _name1: &str, _to_copy: usize, bytes: u64) {
        self.bar.inc_length(bytes);
    }

    fn message_copied(&self, _name1: &str, _uid1: u32, bytes: u64) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bar.inc(bytes);
        self.refresh();
    }

    fn folder_finished(&self, _report: &FolderReport) {
        self.folders_done.fetch_add(1, Ordering::Relaxed);
        self.refresh();
    }
}
