//! Tests of the folder mapping (`mapping.rs`).

use imapfleet_imap::{Namespace, Namespaces};

use super::*;

/// A LIST entry from its decoded name (raw = canonical mUTF-7).
fn entry(name: &str, sep: char) -> MailboxEntry {
    MailboxEntry {
        raw_name: mutf7::encode(name),
        name: name.to_owned(),
        delimiter: Some(sep),
        noselect: false,
        has_children: false,
        special_use: None,
        attributes: vec![],
    }
}

fn special(name: &str, sep: char, class: SpecialUse) -> MailboxEntry {
    MailboxEntry {
        special_use: Some(class),
        ..entry(name, sep)
    }
}

fn noselect(name: &str, sep: char) -> MailboxEntry {
    MailboxEntry {
        noselect: true,
        has_children: true,
        attributes: vec!["\\Noselect".into()],
        ..entry(name, sep)
    }
}

fn side(sep: char, prefix: &str, folders: Vec<MailboxEntry>) -> SideFacts {
    SideFacts {
        separator: Some(sep),
        prefix: prefix.to_owned(),
        folders,
    }
}

fn names(sep: char, list: &[&str]) -> Vec<MailboxEntry> {
    list.iter().map(|n| entry(n, sep)).collect()
}

fn map(h1: &SideFacts, h2: &SideFacts, opts: &MappingOptions) -> FolderMap {
    map_folders(h1, h2, opts).unwrap()
}

/// (name1, name2) of every pair.
fn mapping(m: &FolderMap) -> Vec<(String, String)> {
    m.pairs
        .iter()
        .map(|p| (p.name1.clone(), p.name2.clone()))
        .collect()
}

fn expect(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn automap() -> MappingOptions {
    MappingOptions {
        automap: true,
        ..MappingOptions::default()
    }
}

// --- SideFacts --------------------------------------------------------------------------------

fn ns(prefix: &str, delimiter: Option<char>) -> Namespaces {
    Namespaces {
        personal: vec![Namespace {
            prefix: prefix.into(),
            delimiter,
        }],
        ..Namespaces::default()
    }
}

#[test]
fn side_facts_take_separator_and_prefix_from_the_personal_namespace() {
    let f = SideFacts::from_server(&ns("INBOX.", Some('.')), names('/', &["INBOX"]), None, None);
    assert_eq!((f.separator, f.prefix.as_str()), (Some('.'), "INBOX."));
}

#[test]
fn side_facts_fall_back_to_list_then_dot() {
    let f = SideFacts::from_server(&Namespaces::default(), names('/', &["INBOX"]), None, None);
    assert_eq!((f.separator, f.prefix.as_str()), (Some('/'), ""));
    let f = SideFacts::from_server(&ns("", None), vec![], None, None);
    assert_eq!(f.separator, Some('.'));
}

#[test]
fn side_facts_overrides_win_and_prefix_is_decoded() {
    let f = SideFacts::from_server(
        &ns("INBOX.", Some('.')),
        vec![],
        Some('/'),
        Some("Mail".into()),
    );
    assert_eq!((f.separator, f.prefix.as_str()), (Some('/'), "Mail/"));
    let f = SideFacts::from_server(&ns("Entw&APw-rfe/", Some('/')), vec![], None, None);
    assert_eq!(f.prefix, "Entwürfe/");
    // A prefix sent without its separator gets it.
    let f = SideFacts::from_server(&ns("INBOX", Some('.')), vec![], None, None);
    assert_eq!(f.prefix, "INBOX.");
}

// --- separators and prefixes ------------------------------------------------------------------

#[test]
fn maildir_dots_become_slashes() {
    let h1 = side(
        '.',
        "",
        names('.', &["INBOX", "Clients", "Clients.Acme", "a.b.c"]),
    );
    let m = map(
        &h1,
        &side('/', "", names('/', &["INBOX"])),
        &MappingOptions::default(),
    );
    assert_eq!(
        mapping(&m),
        expect(&[
            ("INBOX", "INBOX"),
            ("Clients", "Clients"),
            ("Clients.Acme", "Clients/Acme"),
            ("a.b.c", "a/b/c")
        ])
    );
    assert!(!m.pairs[0].create);
    assert_eq!(
        m.creates,
        vec!["Clients", "Clients/Acme", "a", "a/b", "a/b/c"]
    );
}

#[test]
fn slash_host1_to_inbox_prefix_host2_br26() {
    let h1 = side(
        '/',
        "",
        vec![
            entry("INBOX", '/'),
            entry("INBOX/COMPTA", '/'),
            entry("Archives", '/'),
            entry("Archives/2016", '/'),
            entry("Sent", '/'),
            noselect("Clients", '/'),
            entry("Clients/Acme", '/'),
        ],
    );
    let h2 = side('.', "INBOX.", names('.', &["INBOX"]));
    let m = map(&h1, &h2, &MappingOptions::default());
    assert_eq!(
        mapping(&m),
        expect(&[
            ("INBOX", "INBOX"),
            ("INBOX/COMPTA", "INBOX.COMPTA"),
            ("Archives", "INBOX.Archives"),
            ("Archives/2016", "INBOX.Archives.2016"),
            ("Sent", "INBOX.Sent"),
            ("Clients/Acme", "INBOX.Clients.Acme"),
        ])
    );
    assert_eq!(
        m.creates,
        vec![
            "INBOX.COMPTA",
            "INBOX.Archives",
            "INBOX.Archives.2016",
            "INBOX.Sent",
            "INBOX.Clients",
            "INBOX.Clients.Acme"
        ]
    );
    assert!(m.creates.iter().all(|c| !c.starts_with("INBOX.INBOX")));
}

#[test]
fn mixed_case_inbox_is_inbox_br26_smartermail() {
    let h1 = side('/', "", names('/', &["Inbox", "Inbox/Status"]));
    let m = map(
        &h1,
        &side('.', "INBOX.", names('.', &["INBOX"])),
        &MappingOptions::default(),
    );
    assert_eq!(
        mapping(&m),
        expect(&[("Inbox", "INBOX"), ("Inbox/Status", "INBOX.Status")])
    );
    let m = map(
        &h1,
        &side('/', "", names('/', &["INBOX"])),
        &MappingOptions::default(),
    );
    assert_eq!(
        mapping(&m),
        expect(&[("Inbox", "INBOX"), ("Inbox/Status", "INBOX/Status")])
    );
}

#[test]
fn inbox_prefix_host1_to_plain_host2() {
    let h1 = side(
        '.',
        "INBOX.",
        names(
            '.',
            &["INBOX", "INBOX.Sent", "INBOX.Clients", "INBOX.Clients.Acme"],
        ),
    );
    let m = map(&h1, &side('/', "", vec![]), &MappingOptions::default());
    assert_eq!(
        mapping(&m),
        expect(&[
            ("INBOX", "INBOX"),
            ("INBOX.Sent", "Sent"),
            ("INBOX.Clients", "Clients"),
            ("INBOX.Clients.Acme", "Clients/Acme")
        ])
    );
    assert_eq!(m.pairs[0].raw2, "INBOX");
    assert!(!m.pairs[0].create, "INBOX is never created");
}

#[test]
fn inbox_prefix_on_both_sides_is_kept_once() {
    let h1 = side('.', "INBOX.", names('.', &["INBOX", "INBOX.Sent"]));
    let h2 = side('/', "INBOX/", names('/', &["INBOX"]));
    assert_eq!(
        mapping(&map(&h1, &h2, &MappingOptions::default())),
        expect(&[("INBOX", "INBOX"), ("INBOX.Sent", "INBOX/Sent")])
    );
}

#[test]
fn slash_inside_a_dot_host1_name_is_replaced() {
    // sdbox LAYOUT=index (separator ".") allows "/" inside a name; on a "/" host2 it would split.
    let h1 = side(
        '.',
        "",
        names('.', &["Jim / John", "Clients/2023", "Clients/2023.Q1"]),
    );
    let m = map(&h1, &side('/', "", vec![]), &MappingOptions::default());
    assert_eq!(
        mapping(&m),
        expect(&[
            ("Jim / John", "Jim _ John"),
            ("Clients/2023", "Clients_2023"),
            ("Clients/2023.Q1", "Clients_2023/Q1")
        ])
    );
    // And a "." inside a "/" name bound for a "." server.
    let h1 = side('/', "", names('/', &["Releases", "Releases/v1.2"]));
    let m = map(&h1, &side('.', "", vec![]), &MappingOptions::default());
    assert_eq!(
        mapping(&m),
        expect(&[("Releases", "Releases"), ("Releases/v1.2", "Releases.v1_2")])
    );
}

#[test]
fn empty_components_are_not_lost() {
    let h1 = side('.', "", names('.', &["a..b"]));
    assert_eq!(
        mapping(&map(
            &h1,
            &side('/', "", vec![]),
            &MappingOptions::default()
        ))[0]
            .1,
        "a/_/b"
    );
}

#[test]
fn brackets_in_names_br10() {
    let h1 = side(
        '.',
        "",
        names('.', &["[Archive]", "[Archive].2019", "Proj[2023", "x]y"]),
    );
    let m = map(&h1, &side('/', "", vec![]), &MappingOptions::default());
    assert_eq!(
        mapping(&m),
        expect(&[
            ("[Archive]", "[Archive]"),
            ("[Archive].2019", "[Archive]/2019"),
            ("Proj[2023", "Proj[2023"),
            ("x]y", "x]y")
        ])
    );
}

#[test]
fn tabs_in_names_become_spaces_br11() {
    let h1 = side(
        '/',
        "",
        names(
            '/',
            &[
                "INBOX/Da\tOggetto\tRicevuto\tDimensione\tCategorie\t",
                "Keep trailing ",
            ],
        ),
    );
    let m = map(&h1, &side('/', "", vec![]), &MappingOptions::default());
    assert_eq!(
        m.pairs[0].name2,
        "INBOX/Da Oggetto Ricevuto Dimensione Categorie"
    );
    assert_eq!(
        m.pairs[1].name2, "Keep trailing ",
        "names without control characters are not touched"
    );
}

// --- mUTF-7 -----------------------------------------------------------------------------------

#[test]
fn non_ascii_names_are_encoded_canonically_br24() {
    let unicode = [
        "Entwürfe",
        "R&D",
        "abc®D",
        "Отправленные",
        "Абв&где",
        "A&B&C",
        "日本語",
    ];
    let wire = [
        "Entw&APw-rfe",
        "R&-D",
        "abc&AK4-D",
        "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-",
        "&BBAEMQQy-&-&BDMENAQ1-",
        "A&-B&-C",
        "&ZeVnLIqe-",
    ];
    let h1 = side('.', "", names('.', &unicode));
    let m = map(&h1, &side('/', "", vec![]), &MappingOptions::default());
    let raw2: Vec<&str> = m.pairs.iter().map(|p| p.raw2.as_str()).collect();
    assert_eq!(raw2, wire);
    assert_eq!(m.pairs[0].name2, "Entwürfe");
    // Second run: host2 lists them now; nothing is created again.
    let h2 = side('/', "", names('/', &unicode));
    let m = map(&h1, &h2, &MappingOptions::default());
    assert!(m.creates.is_empty() && m.pairs.iter().all(|p| !p.create));
}

#[test]
fn listed_raw_name_is_reused() {
    // host2 lists a (non-canonical) spelling of the name: send it back exactly as listed.
    let mut listed = entry("Entwürfe", '/');
    listed.raw_name = "Entw&APw-rfe-odd".into();
    let m = map(
        &side('.', "", names('.', &["Entwürfe"])),
        &side('/', "", vec![listed]),
        &MappingOptions::default(),
    );
    assert_eq!(m.pairs[0].raw2, "Entw&APw-rfe-odd");
    assert!(!m.pairs[0].create);
}

#[test]
fn non_ascii_prefix_and_parents_are_encoded() {
    let h1 = side('.', "", names('.', &["Été.Août"]));
    let m = map(&h1, &side('/', "", vec![]), &MappingOptions::default());
    assert_eq!(
        m.creates,
        vec![mutf7::encode("Été"), mutf7::encode("Été/Août")]
    );
}

// --- automap ----------------------------------------------------------------------------------

#[test]
fn automap_by_attribute_with_subfolders() {
    let h1 = side(
        '.',
        "",
        vec![
            entry("INBOX", '.'),
            special("Gesendete Objekte", '.', SpecialUse::Sent),
            entry("Gesendete Objekte.2019", '.'),
        ],
    );
    let h2 = side(
        '/',
        "",
        vec![entry("INBOX", '/'), special("Sent", '/', SpecialUse::Sent)],
    );
    let m = map(&h1, &h2, &automap());
    assert_eq!(
        mapping(&m),
        expect(&[
            ("INBOX", "INBOX"),
            ("Gesendete Objekte", "Sent"),
            ("Gesendete Objekte.2019", "Sent/2019")
        ])
    );
    assert_eq!(m.pairs[1].special_use, Some(SpecialUse::Sent));
    assert!(!m.pairs[1].create);
    assert_eq!(m.creates, vec!["Sent/2019"]);
    // Without --automap names stay.
    assert_eq!(
        map(&h1, &h2, &MappingOptions::default()).pairs[1].name2,
        "Gesendete Objekte"
    );
}

#[test]
fn automap_by_localized_name_br28() {
    let h1 = side(
        '/',
        "",
        names(
            '/',
            &[
                "INBOX",
                "Posta inviata",
                "Posta inviata/2019",
                "Posta eliminata",
                "Bozze",
                "Posta indesiderata",
                "Attività",
            ],
        ),
    );
    let h2 = side(
        '/',
        "",
        vec![
            entry("INBOX", '/'),
            special("Drafts", '/', SpecialUse::Drafts),
            special("Sent", '/', SpecialUse::Sent),
            special("Trash", '/', SpecialUse::Trash),
            special("Junk", '/', SpecialUse::Junk),
        ],
    );
    let m = map(&h1, &h2, &automap());
    assert_eq!(
        mapping(&m),
        expect(&[
            ("INBOX", "INBOX"),
            ("Posta inviata", "Sent"),
            ("Posta inviata/2019", "Sent/2019"),
            ("Posta eliminata", "Trash"),
            ("Bozze", "Drafts"),
            ("Posta indesiderata", "Junk"),
            ("Attività", "Attività"),
        ])
    );
    assert_eq!(m.pairs[6].raw2, "Attivit&AOA-");
    assert_eq!(m.creates, vec!["Sent/2019", "Attivit&AOA-"]);
}

#[test]
fn automap_onto_host2_localized_names_without_attributes() {
    let h1 = side(
        '/',
        "",
        vec![
            special("Sent", '/', SpecialUse::Sent),
            entry("Deleted Items", '/'),
        ],
    );
    let h2 = side(
        '.',
        "INBOX.",
        names(
            '.',
            &["INBOX", "INBOX.Gesendete Elemente", "INBOX.Papierkorb"],
        ),
    );
    let m = map(&h1, &h2, &automap());
    assert_eq!(
        mapping(&m),
        expect(&[
            ("Sent", "INBOX.Gesendete Elemente"),
            ("Deleted Items", "INBOX.Papierkorb")
        ])
    );
    assert!(m.creates.is_empty());
}

#[test]
fn automap_prefers_host2_folder_with_the_same_name() {
    let h1 = side('/', "", names('/', &["Sent Items"]));
    let h2 = side('/', "", names('/', &["Sent", "Sent Items"]));
    assert_eq!(map(&h1, &h2, &automap()).pairs[0].name2, "Sent Items");
}

#[test]
fn automap_creates_the_usual_name_when_host2_has_no_such_folder() {
    // A fresh Dovecot lists none of its configured special-use folders (they appear once they
    // exist): the class's usual name is created, under host2's prefix, subfolders below it.
    let h1 = side(
        '/',
        "",
        names(
            '/',
            &[
                "INBOX",
                "Posta inviata",
                "Posta inviata/2019",
                "Papierkorb",
                "Brouillons",
                "Spam",
                "Archivio",
                "Attività",
            ],
        ),
    );
    let bare = side('.', "INBOX.", names('.', &["INBOX"]));
    let m = map(&h1, &bare, &automap());
    assert_eq!(
        mapping(&m),
        expect(&[
            ("INBOX", "INBOX"),
            ("Posta inviata", "INBOX.Sent"),
            ("Posta inviata/2019", "INBOX.Sent.2019"),
            ("Papierkorb", "INBOX.Trash"),
            ("Brouillons", "INBOX.Drafts"),
            ("Spam", "INBOX.Junk"),
            ("Archivio", "INBOX.Archive"),
            ("Attività", "INBOX.Attività"),
        ])
    );
    assert!(m.pairs[1].create);
    assert_eq!(m.creates[0], "INBOX.Sent");
    // Without --automap nothing is renamed.
    assert_eq!(
        map(&h1, &bare, &MappingOptions::default()).pairs[1].name2,
        "INBOX.Posta inviata"
    );
}

#[test]
fn automap_all_mail_goes_to_host2_all_else_archive() {
    // Gmail's view: [Gmail]/All Mail (\All), [Gmail]/Sent Mail (\Sent), [Gmail]/Starred (\Flagged).
    let h1 = side(
        '/',
        "",
        vec![
            entry("INBOX", '/'),
            entry("Work", '/'),
            noselect("[Gmail]", '/'),
            special("[Gmail]/All Mail", '/', SpecialUse::All),
            special("[Gmail]/Sent Mail", '/', SpecialUse::Sent),
            special("[Gmail]/Starred", '/', SpecialUse::Flagged),
        ],
    );
    let fresh = side('/', "", names('/', &["INBOX"]));
    let m = map(&h1, &fresh, &automap());
    assert_eq!(
        mapping(&m),
        expect(&[
            ("INBOX", "INBOX"),
            ("Work", "Work"),
            ("[Gmail]/All Mail", "Archive"),
            ("[Gmail]/Sent Mail", "Sent"),
            ("[Gmail]/Starred", "[Gmail]/Starred"),
        ])
    );
    // host2's own archive folder (by attribute or name) is preferred, and its \All over that.
    let with_archive = side(
        '/',
        "",
        vec![
            entry("INBOX", '/'),
            special("Archiv", '/', SpecialUse::Archive),
        ],
    );
    assert_eq!(map(&h1, &with_archive, &automap()).pairs[2].name2, "Archiv");
    let with_all = side(
        '/',
        "",
        vec![
            entry("INBOX", '/'),
            entry("Archive", '/'),
            special("All", '/', SpecialUse::All),
        ],
    );
    assert_eq!(map(&h1, &with_all, &automap()).pairs[2].name2, "All");
}

#[test]
fn host1_attributes_win_over_names() {
    // host1 marks "Sent" as \Sent: its "Sent Items" is an ordinary folder, kept as is.
    let h1 = side(
        '/',
        "",
        vec![
            entry("Sent Items", '/'),
            special("Sent", '/', SpecialUse::Sent),
        ],
    );
    let h2 = side('/', "", vec![special("Sent", '/', SpecialUse::Sent)]);
    let m = map(&h1, &h2, &automap());
    assert_eq!(
        mapping(&m),
        expect(&[("Sent Items", "Sent Items"), ("Sent", "Sent")])
    );
}

#[test]
fn one_host1_folder_per_host2_special_folder() {
    // Two localized Sent folders: the first takes host2's Sent, the other keeps its name.
    let h1 = side(
        '/',
        "",
        names(
            '/',
            &["Posta inviata", "Sent Messages", "Sent Messages/old"],
        ),
    );
    let h2 = side('/', "", vec![special("Sent", '/', SpecialUse::Sent)]);
    let m = map(&h1, &h2, &automap());
    assert_eq!(
        mapping(&m),
        expect(&[
            ("Posta inviata", "Sent"),
            ("Sent Messages", "Sent Messages"),
            ("Sent Messages/old", "Sent Messages/old")
        ])
    );
    assert!(m.merged_targets().is_empty());
    // An attributed folder beats a localized name even when listed later.
    let h1 = side(
        '/',
        "",
        vec![
            entry("Sent Items", '/'),
            special("Elementos enviados", '/', SpecialUse::Sent),
        ],
    );
    let m = map(&h1, &h2, &automap());
    assert_eq!(mapping(&m)[1], ("Elementos enviados".into(), "Sent".into()));
    assert_eq!(mapping(&m)[0], ("Sent Items".into(), "Sent Items".into()));
}

#[test]
fn localized_names_count_only_at_the_top_level() {
    let h1 = side('/', "", names('/', &["Projects/Sent"]));
    let h2 = side('/', "", vec![special("Sent", '/', SpecialUse::Sent)]);
    assert_eq!(map(&h1, &h2, &automap()).pairs[0].name2, "Projects/Sent");
}

#[test]
fn gmail_source_folders() {
    let h1 = side(
        '/',
        "",
        vec![
            entry("INBOX", '/'),
            noselect("[Gmail]", '/'),
            special("[Gmail]/All Mail", '/', SpecialUse::All),
            special("[Gmail]/Drafts", '/', SpecialUse::Drafts),
            special("[Gmail]/Sent Mail", '/', SpecialUse::Sent),
            special("[Gmail]/Trash", '/', SpecialUse::Trash),
            entry("Work", '/'),
        ],
    );
    let h2 = side(
        '.',
        "",
        vec![
            entry("INBOX", '.'),
            special("Sent", '.', SpecialUse::Sent),
            special("Trash", '.', SpecialUse::Trash),
        ],
    );
    let m = map(&h1, &h2, &automap());
    assert_eq!(
        mapping(&m),
        expect(&[
            ("INBOX", "INBOX"),
            // host2 has neither \All nor an archive folder: the usual name (BR-29).
            ("[Gmail]/All Mail", "Archive"),
            // host2 has no \Drafts folder yet: the usual name (BR-28).
            ("[Gmail]/Drafts", "Drafts"),
            ("[Gmail]/Sent Mail", "Sent"),
            ("[Gmail]/Trash", "Trash"),
            ("Work", "Work"),
        ])
    );
    // "[Gmail]" is \Noselect on host1: not a pair, and no longer needed as a parent.
    assert_eq!(m.creates, vec!["Archive", "Drafts", "Work"]);
}

#[test]
fn gmail_like_destination() {
    let h1 = side(
        '.',
        "",
        vec![
            entry("INBOX", '.'),
            special("Sent", '.', SpecialUse::Sent),
            entry("Drafts", '.'),
        ],
    );
    let h2 = side(
        '/',
        "",
        vec![
            entry("INBOX", '/'),
            noselect("[Gmail]", '/'),
            special("[Gmail]/Sent Mail", '/', SpecialUse::Sent),
            special("[Gmail]/Drafts", '/', SpecialUse::Drafts),
        ],
    );
    let m = map(&h1, &h2, &automap());
    assert_eq!(
        mapping(&m),
        expect(&[
            ("INBOX", "INBOX"),
            ("Sent", "[Gmail]/Sent Mail"),
            ("Drafts", "[Gmail]/Drafts")
        ])
    );
    assert!(m.creates.is_empty());
}

// --- explicit options -------------------------------------------------------------------------

#[test]
fn f1f2_names_the_host2_folder_verbatim() {
    let h1 = side(
        '.',
        "",
        vec![
            special("Sent", '.', SpecialUse::Sent),
            entry("Old.Stuff", '.'),
        ],
    );
    let h2 = side('/', "INBOX/", vec![special("Sent", '/', SpecialUse::Sent)]);
    let opts = MappingOptions {
        automap: true,
        f1f2: vec![("Sent".into(), "Archive/Sent 2019".into())],
        regextrans2: vec!["s/Stuff/Things/".into()],
        ..MappingOptions::default()
    };
    let m = map(&h1, &h2, &opts);
    assert_eq!(
        mapping(&m),
        expect(&[
            ("Sent", "Archive/Sent 2019"),
            ("Old.Stuff", "INBOX/Old/Things")
        ])
    );
}

#[test]
fn parse_f1f2_splits_at_the_first_equals() {
    assert_eq!(parse_f1f2("a=b=c").unwrap(), ("a".into(), "b=c".into()));
    assert!(matches!(parse_f1f2("ab"), Err(MappingError::BadF1f2(_))));
    assert!(matches!(parse_f1f2("=b"), Err(MappingError::BadF1f2(_))));
}

#[test]
fn subfolder2_puts_everything_below_and_inbox_at_it() {
    let h1 = side('.', "", names('.', &["INBOX", "INBOX.sub", "Sent"]));
    let opts = MappingOptions {
        subfolder2: Some("Old/Mail".into()),
        ..MappingOptions::default()
    };
    let m = map(&h1, &side('/', "", names('/', &["INBOX"])), &opts);
    assert_eq!(
        mapping(&m),
        expect(&[
            ("INBOX", "Old/Mail"),
            ("INBOX.sub", "Old/Mail/INBOX/sub"),
            ("Sent", "Old/Mail/Sent")
        ])
    );
    assert_eq!(
        m.creates,
        vec![
            "Old",
            "Old/Mail",
            "Old/Mail/INBOX",
            "Old/Mail/INBOX/sub",
            "Old/Mail/Sent"
        ]
    );
    let opts = MappingOptions {
        subfolder2: Some("Old".into()),
        ..MappingOptions::default()
    };
    let m = map(&h1, &side('.', "INBOX.", names('.', &["INBOX"])), &opts);
    assert_eq!(m.pairs[0].name2, "INBOX.Old");
    assert_eq!(m.pairs[2].name2, "INBOX.Old.Sent");
}

#[test]
fn regextrans2_runs_in_order_on_the_full_host2_name() {
    let h1 = side('.', "", names('.', &["INBOX", "Clients.Acme Corp"]));
    let opts = MappingOptions {
        regextrans2: vec![
            "s/ /_/g".into(),
            "s/^INBOX\\.clients/INBOX.Customers/i".into(),
            "s/(Acme)_(Corp)/$2-\\1/".into(),
        ],
        ..MappingOptions::default()
    };
    let m = map(&h1, &side('.', "INBOX.", vec![]), &opts);
    assert_eq!(
        mapping(&m),
        expect(&[
            ("INBOX", "INBOX"),
            ("Clients.Acme Corp", "INBOX.Customers.Corp-Acme")
        ])
    );
}

#[test]
fn bad_regexes_are_errors() {
    let h = side('/', "", vec![]);
    let bad = |opts: MappingOptions| map_folders(&h, &h, &opts).unwrap_err();
    assert!(matches!(
        bad(MappingOptions {
            regextrans2: vec!["s/(/x/".into()],
            ..MappingOptions::default()
        }),
        MappingError::BadRegextrans { .. }
    ));
    assert!(matches!(
        bad(MappingOptions {
            include: vec!["(".into()],
            ..MappingOptions::default()
        }),
        MappingError::BadRegex {
            option: "--include",
            ..
        }
    ));
    assert!(matches!(
        bad(MappingOptions {
            exclude: vec!["[".into()],
            ..MappingOptions::default()
        }),
        MappingError::BadRegex {
            option: "--exclude",
            ..
        }
    ));
}

#[test]
fn selection_by_folder_include_exclude_on_decoded_names() {
    let h1 = side(
        '.',
        "",
        names(
            '.',
            &["INBOX", "Entwürfe", "Archive", "Archive.2019", "Spam"],
        ),
    );
    let h2 = side('/', "", vec![]);
    let only = |opts: MappingOptions| -> Vec<String> {
        map(&h1, &h2, &opts)
            .pairs
            .into_iter()
            .map(|p| p.name1)
            .collect()
    };
    assert_eq!(
        only(MappingOptions {
            folders: vec!["inbox".into(), "Entwürfe".into()],
            ..MappingOptions::default()
        }),
        ["INBOX", "Entwürfe"]
    );
    assert_eq!(
        only(MappingOptions {
            include: vec!["^Archive".into(), "ü".into()],
            ..MappingOptions::default()
        }),
        ["Entwürfe", "Archive", "Archive.2019"]
    );
    assert_eq!(
        only(MappingOptions {
            exclude: vec!["^Archive\\.".into(), "^Spam$".into()],
            ..MappingOptions::default()
        }),
        ["INBOX", "Entwürfe", "Archive"]
    );
}

// --- pairs and creates ------------------------------------------------------------------------

#[test]
fn noselect_folders_are_never_pairs_and_order_is_kept() {
    let h1 = side(
        '/',
        "",
        vec![
            entry("Zeta", '/'),
            noselect("Clients", '/'),
            entry("Clients/Acme", '/'),
            entry("Alpha", '/'),
        ],
    );
    let m = map(&h1, &side('/', "", vec![]), &MappingOptions::default());
    let order: Vec<&str> = m.pairs.iter().map(|p| p.name1.as_str()).collect();
    assert_eq!(order, ["Zeta", "Clients/Acme", "Alpha"]);
    assert_eq!(m.creates, vec!["Zeta", "Clients", "Clients/Acme", "Alpha"]);
}

#[test]
fn creates_skip_what_host2_has_and_list_parents_first() {
    let h1 = side('.', "", names('.', &["a.b.c", "a", "x.y"]));
    let h2 = side(
        '/',
        "",
        vec![entry("a", '/'), noselect("x", '/'), noselect("a/b/c", '/')],
    );
    let m = map(&h1, &h2, &MappingOptions::default());
    // "a" exists; "x" is a \Noselect node (a parent already); "a/b/c" is listed \Noselect: it
    // must be created to hold mail.
    assert_eq!(m.creates, vec!["a/b", "a/b/c", "x/y"]);
    let creates: Vec<bool> = m.pairs.iter().map(|p| p.create).collect();
    assert_eq!(creates, [true, false, true]);
}

#[test]
fn inbox_uses_host2s_listed_spelling() {
    let mut inbox = entry("Inbox", '/');
    inbox.raw_name = "Inbox".into();
    let m = map(
        &side('.', "", names('.', &["INBOX"])),
        &side('/', "", vec![inbox]),
        &MappingOptions::default(),
    );
    assert_eq!(
        (m.pairs[0].raw2.as_str(), m.pairs[0].create),
        ("Inbox", false)
    );
}

#[test]
fn merged_targets_are_visible() {
    // host1 has both "INBOX/COMPTA" and a top-level "COMPTA": under host2's "INBOX." both are INBOX.COMPTA.
    let h1 = side('/', "", names('/', &["INBOX/COMPTA", "COMPTA", "Other"]));
    let m = map(
        &h1,
        &side('.', "INBOX.", vec![]),
        &MappingOptions::default(),
    );
    assert_eq!(
        m.merged_targets(),
        vec![(
            "INBOX.COMPTA".to_owned(),
            vec!["INBOX/COMPTA".to_owned(), "COMPTA".to_owned()]
        )]
    );
    assert_eq!(m.creates, vec!["INBOX.COMPTA", "INBOX.Other"]);
    // Each pair knows it: --delete2 must not act on a merged target.
    let merged: Vec<(&str, bool)> = m
        .pairs
        .iter()
        .map(|p| (p.name1.as_str(), p.merged))
        .collect();
    assert_eq!(
        merged,
        vec![("INBOX/COMPTA", true), ("COMPTA", true), ("Other", false)]
    );
}

#[test]
fn folder_option_naming_a_folder_host1_lacks_is_an_error() {
    let h1 = side('.', "", names('.', &["INBOX", "Projects", "Projects.2024"]));
    let h2 = side('/', "", vec![]);
    // The right name (any INBOX case) maps.
    let ok = MappingOptions {
        folders: vec!["Projects.2024".into(), "inbox".into()],
        ..MappingOptions::default()
    };
    assert_eq!(map(&h1, &h2, &ok).pairs.len(), 2);
    // host2's separator, a typo, an encoded form: named in the error, with host1's separator.
    for wrong in ["Projects/2024", "Projets", "&ZeVnLIqe-"] {
        let opts = MappingOptions {
            folders: vec!["INBOX".into(), wrong.into()],
            ..MappingOptions::default()
        };
        let err = map_folders(&h1, &h2, &opts).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, MappingError::NoSuchFolder { .. }), "{text}");
        assert!(text.contains(&format!("{wrong:?}")), "{text}");
        assert!(
            !text.contains("\"INBOX\","),
            "only the missing ones: {text}"
        );
        assert!(
            text.contains("'.'") && text.contains("Projects.2024"),
            "{text}"
        );
    }
}

#[test]
fn an_empty_pattern_is_refused_for_each_option() {
    let h1 = side('.', "", names('.', &["INBOX", "Junk"]));
    let h2 = side('.', "", vec![]);
    for (opts, option) in [
        (
            MappingOptions {
                exclude: vec!["^Junk".into(), String::new()],
                ..MappingOptions::default()
            },
            "--exclude",
        ),
        (
            MappingOptions {
                include: vec![String::new()],
                ..MappingOptions::default()
            },
            "--include",
        ),
    ] {
        let err = map_folders(&h1, &h2, &opts).unwrap_err().to_string();
        assert!(
            err.starts_with(option) && err.contains("empty pattern"),
            "{err}"
        );
    }
}
