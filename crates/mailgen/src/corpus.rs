//! The shared real-world corpus (`shared/corpus`, 817 messages): read per `MANIFEST.tsv`.
//! The messages are never copied into this repository; tests read them from beside the work tree
//! and skip when the corpus is absent.

use std::path::{Path, PathBuf};

/// Where the corpus is: `$IMAPFLEET_CORPUS` if set, else `<workspace>/../shared/corpus`.
pub fn corpus_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("IMAPFLEET_CORPUS") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus")
}

/// (relative path, bytes) of every message listed in `dir/MANIFEST.tsv`, in manifest order.
/// Empty when the manifest is absent; unreadable files are skipped. Bytes are as stored (many
/// files have LF line ends: see [`to_crlf`]).
pub fn corpus_messages(dir: impl AsRef<Path>) -> Vec<(String, Vec<u8>)> {
    let dir = dir.as_ref();
    let Ok(manifest) = std::fs::read_to_string(dir.join("MANIFEST.tsv")) else {
        return Vec::new();
    };
    manifest
        .lines()
        .skip(1)
        .filter_map(|line| line.split('\t').next())
        .filter(|p| !p.is_empty() && !p.contains(".."))
        .filter_map(|p| std::fs::read(dir.join(p)).ok().map(|b| (p.to_string(), b)))
        .collect()
}

/// Bare LF (and bare CR) to CRLF; existing CRLF pairs are kept.
pub fn to_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_conversion() {
        assert_eq!(to_crlf(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd");
    }

    #[test]
    fn reads_the_shared_corpus_when_present() {
        let dir = corpus_dir();
        let msgs = corpus_messages(&dir);
        if !dir.join("MANIFEST.tsv").exists() {
            eprintln!("corpus absent at {}: skipped", dir.display());
            assert!(msgs.is_empty());
            return;
        }
        let listed = std::fs::read_to_string(dir.join("MANIFEST.tsv"))
            .unwrap()
            .lines()
            .count()
            - 1;
        assert_eq!(msgs.len(), listed);
        // Sizes agree with the manifest.
        let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
        for (line, (path, bytes)) in manifest.lines().skip(1).zip(&msgs) {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols[0], path);
            assert_eq!(cols[1].parse::<usize>().unwrap(), bytes.len(), "{path}");
        }
        assert!(corpus_messages("/nonexistent/corpus").is_empty());
    }
}
