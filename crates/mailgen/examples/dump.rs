//! Write a generated mailbox to a directory (one .eml per message) and print a summary, for looking
//! at what the generator makes: `cargo run -p imapfleet-mailgen --example dump -- DIR [small|bench] [SEED]`.

use std::io::Write as _;

use imapfleet_mailgen::MailboxSpec;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = std::path::PathBuf::from(args.first().map(String::as_str).unwrap_or("mailgen-dump"));
    let mut spec = match args.get(1).map(String::as_str) {
        Some("bench") => MailboxSpec::bench(),
        _ => MailboxSpec::small(),
    };
    if let Some(s) = args.get(2) {
        spec.seed = s.parse().expect("seed: an integer");
    }
    let mut total = 0u64;
    let mut count = 0usize;
    let mut index = std::fs::File::create({
        std::fs::create_dir_all(&dir)?;
        dir.join("index.tsv")
    })?;
    for (fi, folder) in spec.generate().enumerate() {
        let fdir = dir.join(format!("{fi:02}"));
        std::fs::create_dir_all(&fdir)?;
        println!(
            "{:>2} {:<28} {:>5} messages {:>11} bytes",
            fi,
            folder.name('/'),
            folder.messages.len(),
            folder.total_bytes()
        );
        for (i, m) in folder.messages.iter().enumerate() {
            std::fs::write(fdir.join(format!("{i:04}.eml")), &m.bytes)?;
            writeln!(
                index,
                "{fi:02}/{i:04}.eml\t{}\t{}\t{}\t{}",
                folder.name('/'),
                m.bytes.len(),
                m.internaldate.to_rfc3339(),
                m.flags.join(" ")
            )?;
            total += m.bytes.len() as u64;
            count += 1;
        }
    }
    println!("{count} messages, {total} bytes");
    Ok(())
}
