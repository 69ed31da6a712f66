//! Localized names of special folders, for `--automap` on servers without SPECIAL-USE.
//!
//! Names are compared after Unicode lower-casing and whitespace trimming. The table covers the
//! names that mail clients and servers create by default (Outlook/Exchange, Thunderbird, Apple Mail,
//! Gmail, Roundcube/Horde, Courier, Zimbra) in en, de, fr, es, it, pt, nl, ru and a few more.

use imapfleet_imap::SpecialUse;

const SENT: &[&str] = &[
    "sent",
    "sent items",
    "sent messages",
    "sent mail",
    "sent-mail",
    // de
    "gesendet",
    "gesendete elemente",
    "gesendete objekte",
    "gesendete nachrichten",
    // fr
    "éléments envoyés",
    "elements envoyes",
    "envoyés",
    "envoyes",
    "messages envoyés",
    "objets envoyés",
    // es
    "elementos enviados",
    "enviados",
    "mensajes enviados",
    "correo enviado",
    // it
    "posta inviata",
    "inviata",
    "inviati",
    "elementi inviati",
    "messaggi inviati",
    // pt
    "itens enviados",
    "enviadas",
    "mensagens enviadas",
    // nl
    "verzonden items",
    "verzonden",
    "verzonden berichten",
    // ru, pl, sv, da/no, fi, cs, tr
    "отправленные",
    "wysłane",
    "elementy wysłane",
    "skickat",
    "skickade objekt",
    "sendt",
    "sendte",
    "sendte elementer",
    "lähetetyt",
    "odeslaná pošta",
    "odeslané",
    "gönderilmiş öğeler",
];

const DRAFTS: &[&str] = &[
    "drafts",
    "draft",
    "entwürfe",
    "entwurf",
    "brouillons",
    "borradores",
    "bozze",
    "rascunhos",
    "concepten",
    "черновики",
    "kopie robocze",
    "utkast",
    "kladder",
    "luonnokset",
    "koncepty",
    "taslaklar",
];

const TRASH: &[&str] = &[
    "trash",
    "deleted items",
    "deleted messages",
    "deleted",
    "bin",
    "papierkorb",
    "gelöschte elemente",
    "gelöschte objekte",
    "corbeille",
    "éléments supprimés",
    "elements supprimes",
    "papelera",
    "elementos eliminados",
    "elementos borrados",
    "cestino",
    "posta eliminata",
    "elementi eliminati",
    "lixeira",
    "lixo",
    "itens excluídos",
    "itens eliminados",
    "prullenbak",
    "verwijderde items",
    "корзина",
    "удаленные",
    "удалённые",
    "kosz",
    "papperskorgen",
    "borttagna objekt",
    "papirkurv",
    "slettede elementer",
    "roskakori",
    "koš",
    "çöp",
];

const JUNK: &[&str] = &[
    "junk",
    "spam",
    "junk e-mail",
    "junk-e-mail",
    "junk email",
    "junk mail",
    "bulk mail",
    "unerwünscht",
    "courrier indésirable",
    "indésirables",
    "pourriel",
    "correo no deseado",
    "posta indesiderata",
    "lixo eletrônico",
    "lixo electrónico",
    "ongewenste e-mail",
    "спам",
    "нежелательная почта",
    "skräppost",
    "uønsket e-post",
    "roskaposti",
];

const ARCHIVE: &[&str] = &[
    "archive",
    "archives",
    "archiv",
    "archivio",
    "archivo",
    "archief",
    "arquivo",
    "архив",
    "archiwum",
    "arkiv",
    "arkisto",
];

const TABLE: &[(SpecialUse, &[&str])] = &[
    (SpecialUse::Sent, SENT),
    (SpecialUse::Drafts, DRAFTS),
    (SpecialUse::Trash, TRASH),
    (SpecialUse::Junk, JUNK),
    (SpecialUse::Archive, ARCHIVE),
];

/// The special-use class a folder name implies, if it is one of the known localized names.
pub(crate) fn class_of(name: &str) -> Option<SpecialUse> {
    let lower = name.trim().to_lowercase();
    TABLE
        .iter()
        .find(|(_, names)| names.contains(&lower.as_str()))
        .map(|(class, _)| *class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_common_names_in_any_case() {
        assert_eq!(class_of("Sent Items"), Some(SpecialUse::Sent));
        assert_eq!(class_of("GESENDETE OBJEKTE"), Some(SpecialUse::Sent));
        assert_eq!(class_of("Éléments envoyés"), Some(SpecialUse::Sent));
        assert_eq!(class_of("Отправленные"), Some(SpecialUse::Sent));
        assert_eq!(class_of("Entwürfe"), Some(SpecialUse::Drafts));
        assert_eq!(class_of("Gelöschte Elemente"), Some(SpecialUse::Trash));
        assert_eq!(class_of("Junk-E-Mail"), Some(SpecialUse::Junk));
        assert_eq!(class_of("Archiv"), Some(SpecialUse::Archive));
        assert_eq!(class_of("Attività"), None);
        assert_eq!(class_of("INBOX"), None);
    }

    #[test]
    fn table_entries_are_lower_case_and_unique() {
        let mut all: Vec<&str> = TABLE.iter().flat_map(|(_, n)| n.iter().copied()).collect();
        assert!(
            all.iter().all(|n| n.to_lowercase() == *n && n.trim() == *n),
            "entries must be normalised"
        );
        let len = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), len, "a name belongs to one class only");
    }
}
