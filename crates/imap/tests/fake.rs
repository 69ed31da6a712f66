//! Tests against a scripted fake server on loopback: server quirks from /work/shared/cases (bytes
//! inlined here), the protocol paths Dovecot never takes (no LITERAL+, no SASL-IR, PREAUTH, BYE
//! greetings), timeouts and dropped connections. No lab needed.

use std::time::Duration;

use imapfleet_imap::{AppendRequest, AuthMethod, Endpoint, ImapError, Secret, Security, Session};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Debug)]
enum Step {
    /// Send these bytes (`{tag}` = tag of the last command received).
    S(&'static str),
    /// Receive one command; its text after the tag must start with this (case-insensitive).
    C(&'static str),
    /// Receive one untagged line (a SASL response).
    Line,
    /// Wait.
    Sleep(u64),
    /// Close the connection.
    Close,
}
use Step::*;

/// What the client sent: whole commands with literals inlined, tag removed.
type Received = Vec<Vec<u8>>;

async fn read_command(r: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut all = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        let body = line.strip_suffix(b"\r\n").unwrap_or(&line).to_vec();
        all.extend_from_slice(&body);
        // A literal at the end of the line?
        let lit = body.strip_suffix(b"}").and_then(|l| {
            let open = l.iter().rposition(|b| *b == b'{')?;
            let inner = &l[open + 1..];
            let (digits, plus) = match inner.strip_suffix(b"+") {
                Some(d) => (d, true),
                None => (inner, false),
            };
            let n: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
            Some((n, plus))
        });
        match lit {
            Some((n, plus)) => {
                if !plus {
                    r.get_mut().write_all(b"+ go ahead\r\n").await.ok()?;
                }
                let mut buf = vec![0u8; n];
                r.read_exact(&mut buf).await.ok()?;
                all.extend_from_slice(b"\r\n");
                all.extend_from_slice(&buf);
            }
            None => break,
        }
    }
    match all.iter().position(|b| *b == b' ') {
        Some(p) => Some((
            String::from_utf8_lossy(&all[..p]).to_string(),
            all[p + 1..].to_vec(),
        )),
        None => Some((String::from_utf8_lossy(&all).to_string(), Vec::new())),
    }
}

/// Start a fake server running `script` for each connection in `scripts` (one per connection).
async fn fake(scripts: Vec<Vec<Step>>) -> (u16, tokio::task::JoinHandle<Vec<Received>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let h = tokio::spawn(async move {
        let mut all = Vec::new();
        for script in scripts {
            let (sock, _) = listener.accept().await.expect("accept");
            let mut r = BufReader::new(sock);
            let mut tag = String::from("*");
            let mut got = Vec::new();
            for step in script {
                match step {
                    S(s) => {
                        let s = s.replace("{tag}", &tag);
                        if r.get_mut().write_all(s.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                    Line => {
                        let mut line = Vec::new();
                        if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                            break;
                        }
                        got.push(line.strip_suffix(b"\r\n").unwrap_or(&line).to_vec());
                    }
                    C(prefix) => match read_command(&mut r).await {
                        Some((t, body)) => {
                            let text = String::from_utf8_lossy(&body).to_string();
                            assert!(
                                text.to_ascii_uppercase()
                                    .starts_with(&prefix.to_ascii_uppercase()),
                                "expected {prefix:?}, got {text:?}"
                            );
                            tag = t;
                            got.push(body);
                        }
                        None => break,
                    },
                    Sleep(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                    Close => break,
                }
            }
            all.push(got);
        }
        all
    });
    (port, h)
}

fn ep(port: u16) -> Endpoint {
    Endpoint {
        label: "fake".into(),
        host: "127.0.0.1".into(),
        port,
        security: Security::Plain,
        user: "u".into(),
        authuser: None,
        password: Secret::new("pw"),
        auth: AuthMethod::Auto,
        ca_file: None,
        insecure: false,
        timeout: Duration::from_secs(5),
    }
}

/// Greeting with capabilities, AUTHENTICATE PLAIN with SASL-IR, OK with capabilities.
fn login() -> Vec<Step> {
    vec![
        S("* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN] fake ready\r\n"),
        C("AUTHENTICATE PLAIN "),
        S("{tag} OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN UIDPLUS MULTIAPPEND CONDSTORE NAMESPACE ID ENABLE] Logged in\r\n"),
    ]
}

fn with_login(rest: Vec<Step>) -> Vec<Step> {
    let mut v = login();
    v.extend(rest);
    v
}

#[tokio::test]
async fn sasl_plain_initial_response_is_right() {
    let (port, h) = fake(vec![with_login(vec![C("NOOP"), S("{tag} OK done\r\n")])]).await;
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    assert!(s.capabilities().has("MULTIAPPEND"));
    s.noop().await.expect("noop");
    drop(s);
    let got = h.await.expect("server");
    let auth = String::from_utf8_lossy(&got[0][0]).to_string();
    use base64::Engine as _;
    let b64 = auth.trim_start_matches("AUTHENTICATE PLAIN ");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    assert_eq!(raw, b"\0u\0pw");
}

#[tokio::test]
async fn bye_greeting_and_non_imap_greeting() {
    let (port, _h) = fake(vec![vec![S("* BYE Too many connections\r\n"), Close]]).await;
    match Session::connect(&ep(port)).await {
        Err(ImapError::ConnectionLost { detail, .. }) => {
            assert!(detail.contains("Too many connections"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    // BR-07: SmarterMail's SMTP-style busy line.
    let (port, _h) = fake(vec![vec![
        S("421 Server is busy, try again later.\r\n"),
        Close,
    ]])
    .await;
    match Session::connect(&ep(port)).await {
        Err(e @ ImapError::Connect { .. }) => {
            assert!(e.is_connection());
            assert!(e.to_string().contains("421 Server is busy"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // Closed before any greeting.
    let (port, _h) = fake(vec![vec![Close]]).await;
    assert!(matches!(
        Session::connect(&ep(port)).await,
        Err(ImapError::ConnectionLost { .. })
    ));
}

#[tokio::test]
async fn preauth_greeting() {
    let (port, h) = fake(vec![vec![
        S("* PREAUTH [CAPABILITY IMAP4rev1 UIDPLUS] already in\r\n"),
        C("NOOP"),
        S("{tag} OK ok\r\n"),
    ]])
    .await;
    let mut s = Session::connect(&ep(port)).await.expect("preauth session");
    assert!(s.capabilities().has("UIDPLUS"));
    s.noop().await.expect("noop");
    drop(s);
    let got = h.await.expect("server");
    assert_eq!(got[0].len(), 1, "no LOGIN after PREAUTH");

    // PREAUTH while STARTTLS is required: refuse.
    let (port, _h) = fake(vec![vec![
        S("* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n"),
        Sleep(200),
    ]])
    .await;
    let mut e = ep(port);
    e.security = Security::StartTls;
    assert!(matches!(
        Session::connect(&e).await,
        Err(ImapError::Tls { .. })
    ));
}

#[tokio::test]
async fn starttls_not_offered_never_falls_back() {
    let (port, h) = fake(vec![vec![
        S("* OK fake ready\r\n"),
        C("CAPABILITY"),
        S("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n"),
        Sleep(200),
    ]])
    .await;
    let mut e = ep(port);
    e.security = Security::StartTls;
    match Session::connect(&e).await {
        Err(ImapError::Tls { reason, .. }) => assert!(reason.contains("STARTTLS"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let got = h.await.expect("server");
    assert_eq!(
        got[0].len(),
        1,
        "nothing but CAPABILITY was sent: {:?}",
        got[0]
    );
}

#[tokio::test]
async fn login_with_synchronising_literal() {
    // No LITERAL+, no AUTH=PLAIN: LOGIN, the 8-bit password as {n} after the server's "+".
    let (port, h) = fake(vec![vec![
        S("* OK [CAPABILITY IMAP4rev1 AUTH=LOGIN] ready\r\n"),
        C("LOGIN"),
        S("{tag} OK Logged in\r\n"),
        C("CAPABILITY"),
        S("* CAPABILITY IMAP4rev1 UIDPLUS\r\n{tag} OK done\r\n"),
    ]])
    .await;
    let mut e = ep(port);
    e.user = "us\"er".into();
    e.password = Secret::new("quo\"te\\back {5} (x) pass word*§ü");
    let s = Session::connect(&e).await.expect("connect");
    assert!(s.capabilities().has("UIDPLUS"));
    drop(s);
    let got = h.await.expect("server");
    let login = &got[0][0];
    let expected = [
        b"LOGIN \"us\\\"er\" {".as_slice(),
        "quo\"te\\back {5} (x) pass word*§ü"
            .len()
            .to_string()
            .as_bytes(),
        b"}\r\n",
        "quo\"te\\back {5} (x) pass word*§ü".as_bytes(),
    ]
    .concat();
    assert_eq!(
        String::from_utf8_lossy(login),
        String::from_utf8_lossy(&expected)
    );
}

#[tokio::test]
async fn login_ascii_password_is_quoted_with_escapes() {
    let (port, h) = fake(vec![vec![
        S("* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n"),
        C("LOGIN"),
        S("{tag} OK [CAPABILITY IMAP4rev1] Logged in\r\n"),
    ]])
    .await;
    let mut e = ep(port);
    e.password = Secret::new(r#"a"b\c {5} (x)*"#);
    Session::connect(&e).await.expect("connect");
    let got = h.await.expect("server");
    assert_eq!(
        String::from_utf8_lossy(&got[0][0]),
        r#"LOGIN "u" "a\"b\\c {5} (x)*""#
    );
}

#[tokio::test]
async fn auth_refusals_are_classified() {
    let refuse = |line: &'static str| {
        vec![
            S("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] ready\r\n"),
            C("AUTHENTICATE PLAIN"),
            S(line),
        ]
    };
    let (port, _h) = fake(vec![
        refuse("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
        refuse("{tag} NO [LIMIT] Maximum number of connections from user+IP exceeded\r\n"),
        refuse("{tag} NO Request is throttled. Suggested Backoff Time: 299609 milliseconds\r\n"),
    ])
    .await;
    match Session::connect(&ep(port)).await {
        Err(ImapError::Auth { reason, .. }) => assert!(reason.contains("AUTHENTICATIONFAILED")),
        other => panic!("{other:?}"),
    }
    match Session::connect(&ep(port)).await {
        Err(ImapError::No { code, .. }) => assert_eq!(code.as_deref(), Some("LIMIT")),
        other => panic!("{other:?}"),
    }
    match Session::connect(&ep(port)).await {
        Err(ImapError::No { text, .. }) => assert!(text.contains("299609")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn sasl_without_initial_response_and_odd_ok_code() {
    // BR-06: the OK of AUTHENTICATE carries a bracketed code that is not an atom.
    let (port, h) = fake(vec![vec![
        S("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n"),
        C("AUTHENTICATE PLAIN"),
        S("+ \r\n"),
        Line,
        S("{tag} OK [Error=\"Microsoft.Exchange.Data.Storage.WrongServerException:Cross Server access is not allowed for mailbox 00000000-0000-0000-0000-000000000000\" AuthResultFromPopImapEnd=0 Proxy=AB1PR01MB0001.EURPRD01.PROD.OUTLOOK.COM:1993:SSL MailboxBE=AB1PR01MB0002.EURPRD01.PROD.OUTLOOK.COM Service=Imap4] AUTHENTICATE completed.\r\n"),
        C("CAPABILITY"),
        S("* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n"),
        C("SELECT \"INBOX\""),
        S("* 0 EXISTS\r\n* OK [UIDVALIDITY 5] x\r\n{tag} OK [READ-WRITE] done\r\n"),
    ]])
    .await;
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    let sel = s.select("INBOX", false).await.expect("select");
    assert_eq!(sel.uidvalidity, Some(5));
    drop(s);
    let got = h.await.expect("server");
    assert_eq!(got[0][0], b"AUTHENTICATE PLAIN");
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&got[0][1])
        .expect("b64");
    assert_eq!(raw, b"\0u\0pw");
}

#[tokio::test]
async fn status_with_trailing_space_then_noop() {
    // BR-01
    let (port, _h) = fake(vec![with_login(vec![
        C("STATUS \"INBOX\" (MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)"),
        S("* STATUS Inbox (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 7) \r\n{tag} OK STATUS completed.\r\n"),
        C("NOOP"),
        S("{tag} OK NOOP completed.\r\n"),
    ])])
    .await;
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    let st = s.status("INBOX").await.expect("status");
    assert_eq!(
        (st.messages, st.uidnext, st.uidvalidity),
        (Some(1), Some(2), Some(7))
    );
    s.noop().await.expect("aligned");
}

#[tokio::test]
async fn select_quirks() {
    // BR-02 (HIGHESTMODSEQ without text) and BR-04 (space before ")").
    let (port, _h) = fake(vec![with_login(vec![
        C("SELECT \"INBOX\" (CONDSTORE)"),
        S("* FLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen $NotPhishing $Phishing)\r\n\
* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen $NotPhishing $Phishing \\*)] Flags permitted.\r\n\
* OK [UIDVALIDITY 1] UIDs valid.\r\n* 3 EXISTS\r\n* 0 RECENT\r\n* OK [UIDNEXT 4] Predicted next UID.\r\n\
* OK [HIGHESTMODSEQ 4587]\r\n{tag} OK [READ-WRITE] INBOX selected. (Success)\r\n"),
        C("SELECT \"INBOX\" (CONDSTORE)"),
        S("* 1 EXISTS\r\n* 0 RECENT\r\n* OK [UNSEEN 1] first unseen message\r\n* OK [UIDVALIDITY 1754171061] Uid epoch\r\n\
* OK [UIDNEXT 2] Predicted next uid\r\n* FLAGS (\\Answered \\Flagged \\Deleted \\Draft \\Seen $Forwarded )\r\n\
* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Draft \\Seen $Forwarded )] Limited\r\n{tag} OK [READ-WRITE] SELECT completed\r\n"),
        C("EXAMINE \"INBOX\" (CONDSTORE)"),
        S("* 1 EXISTS\r\n{tag} OK [READ-ONLY] EXAMINE completed\r\n"),
    ])])
    .await;
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    let a = s.select("INBOX", false).await.expect("select gmail");
    assert_eq!(
        (a.exists, a.uidvalidity, a.uidnext, a.highestmodseq),
        (3, Some(1), Some(4), Some(4587))
    );
    assert!(a
        .permanent_flags
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == "\\*")));
    let b = s.select("INBOX", false).await.expect("select surgemail");
    assert_eq!(
        (b.exists, b.uidvalidity, b.uidnext),
        (1, Some(1754171061), Some(2))
    );
    let want: Vec<String> = [
        "\\Answered",
        "\\Flagged",
        "\\Deleted",
        "\\Draft",
        "\\Seen",
        "$Forwarded",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(b.flags, want);
    assert_eq!(b.permanent_flags, Some(want));
    assert!(!b.read_only);
    let c = s.select("INBOX", true).await.expect("examine");
    assert!(c.read_only);
}

#[tokio::test]
async fn fetch_listing_with_interleaved_and_odd_lines() {
    // BR-09: EXISTS/RECENT/ALERT/CAPABILITY inside the listing; BR-13: space-padded day.
    let (port, _h) = fake(vec![with_login(vec![
        C("UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (Message-ID)])"),
        S("* 1 FETCH (UID 101 FLAGS (\\Seen) RFC822.SIZE 512 INTERNALDATE \"01-Feb-2022 08:00:00 +0000\" BODY[HEADER.FIELDS (MESSAGE-ID)] {2}\r\n\r\n)\r\n\
* 19 EXISTS\r\n* 1 RECENT\r\n\
* 2 FETCH (UID 102 FLAGS () RFC822.SIZE 640 INTERNALDATE \" 4-Aug-2018 06:46:54 +0900\" BODY[HEADER.FIELDS (MESSAGE-ID)] {2}\r\n\r\n)\r\n\
* OK [ALERT] Scheduled maintenance tonight at 23:00 UTC\r\n* CAPABILITY IMAP4rev1 UIDPLUS MOVE IDLE\r\n\
* 3 FETCH (UID 103 FLAGS (\\Answered) RFC822.SIZE 700 INTERNALDATE \"01-Feb-2022 08:10:00 +0000\")\r\n\
* 3 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID)] {21}\r\nMessage-ID: <a@b>\r\n\r\n)\r\n\
{tag} OK Fetch completed.\r\n"),
    ])])
    .await;
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    let m = s
        .fetch_meta("1:*", &["Message-ID".into()])
        .await
        .expect("listing");
    assert_eq!(
        m.iter().map(|m| m.uid).collect::<Vec<_>>(),
        vec![101, 102, 103]
    );
    assert_eq!(
        m[1].internaldate.map(|d| d.to_rfc3339()).as_deref(),
        Some("2018-08-04T06:46:54+09:00")
    );
    assert!(m[1].flags.is_empty());
    // Items split over two FETCH responses of the same message are merged.
    assert_eq!(m[2].headers, b"Message-ID: <a@b>\r\n\r\n");
    assert_eq!(m[2].flags, vec!["\\Answered".to_string()]);
    // The CAPABILITY line in the middle updated the session's view.
    assert!(s.capabilities().has("MOVE"));
}

#[tokio::test]
async fn fetch_with_a_missing_item_is_fetched_again() {
    // BR-05: "(UID 19436 )" without FLAGS; the second try has them.
    let (port, h) = fake(vec![with_login(vec![
        C("UID FETCH 19435:19436 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER])"),
        S("* 11486 FETCH (UID 19435 FLAGS (\\Seen) RFC822.SIZE 900 INTERNALDATE \"01-Feb-2022 08:00:00 +0000\" BODY[HEADER] {2}\r\n\r\n)\r\n\
* 11487 FETCH (UID 19436 )\r\n{tag} OK FETCH completed\r\n"),
        C("UID FETCH 19436 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER])"),
        S("* 11487 FETCH (FLAGS (\\Seen \\Flagged) UID 19436 RFC822.SIZE 10 INTERNALDATE \"01-Feb-2022 08:00:00 +0000\" BODY[HEADER] {2}\r\n\r\n)\r\n{tag} OK FETCH completed\r\n"),
        C("UID FETCH 7 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER])"),
        S("* 1 FETCH (UID 7 )\r\n{tag} OK FETCH completed\r\n"),
        C("UID FETCH 7 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER])"),
        S("* 1 FETCH (UID 7 )\r\n{tag} OK FETCH completed\r\n"),
        C("NOOP"),
        S("{tag} OK done\r\n"),
    ])])
    .await;
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    let m = s.fetch_meta("19435:19436", &[]).await.expect("listing");
    assert_eq!(m.len(), 2);
    assert_eq!(
        m[1].flags,
        vec!["\\Seen".to_string(), "\\Flagged".to_string()]
    );
    // Still missing after the second try: an error, never empty flags.
    assert!(matches!(
        s.fetch_meta("7", &[]).await,
        Err(ImapError::Protocol { .. })
    ));
    s.noop().await.expect("session still usable");
    drop(s);
    h.await.expect("server");
}

#[tokio::test]
async fn fetch_bodies_exact_and_vanished() {
    let (port, _h) = fake(vec![with_login(vec![
        C("UID FETCH 101:103 (UID BODY.PEEK[])"),
        S("* 1 FETCH (UID 101 BODY[] {7}\r\nab\r\n\x01cd)\r\n* 3 FETCH (UID 103 BODY[] {0}\r\n)\r\n* 9 FETCH (UID 999 FLAGS (\\Seen))\r\n{tag} OK Fetch completed.\r\n"),
    ])])
    .await;
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    let b = s.fetch_bodies(&[103, 101, 102]).await.expect("bodies");
    assert_eq!(b, vec![(101, b"ab\r\n\x01cd".to_vec()), (103, Vec::new())]);
}

#[tokio::test]
async fn list_with_tabs_atoms_and_namespace() {
    // BR-11 (TABs in a bare word) and BR-10 (brackets); NAMESPACE has no imap-proto parser.
    let (port, _h) = fake(vec![with_login(vec![
        C("LIST \"\" \"*\""),
        S("* LIST (\\Marked \\HasChildren) \"/\" INBOX\r\n* LIST (\\HasNoChildren) \"/\" INBOX/Reports\r\n\
* LIST (\\HasNoChildren) \"/\" INBOX/Da\tOggetto\tRicevuto\tDimensione\tCategorie\t\r\n\
* LIST (\\HasNoChildren) \"/\" \"INBOX/Newsletters (QuickFile)\"\r\n\
* LIST (\\HasChildren) \"/\" [Archive]\r\n* LIST (\\HasNoChildren) \"/\" x]y\r\n\
* LIST (\\HasNoChildren) \"/\" {5}\r\nq\"u\\o\r\n{tag} OK LIST completed.\r\n"),
        C("NAMESPACE"),
        S("* NAMESPACE ((\"INBOX.\" \".\")) NIL ((\"#shared.\" \".\"))\r\n{tag} OK done\r\n"),
        C("NOOP"),
        S("{tag} OK done\r\n"),
    ])])
    .await;
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    let l = s.list().await.expect("list");
    let names: Vec<&str> = l.iter().map(|e| e.raw_name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "INBOX",
            "INBOX/Reports",
            "INBOX/Da\tOggetto\tRicevuto\tDimensione\tCategorie\t",
            "INBOX/Newsletters (QuickFile)",
            "[Archive]",
            "x]y",
            "q\"u\\o",
        ]
    );
    let ns = s.namespaces().await.expect("namespace");
    assert_eq!(ns.personal[0].prefix, "INBOX.");
    assert!(ns.other.is_empty());
    assert_eq!(ns.shared[0].prefix, "#shared.");
    s.noop().await.expect("aligned");
}

#[tokio::test]
async fn mailbox_names_are_quoted_when_sent() {
    let (port, h) = fake(vec![with_login(vec![
        C("STATUS"),
        S("* STATUS \"a\\\"b\" (MESSAGES 0)\r\n{tag} OK done\r\n"),
        C("SELECT"),
        S("{tag} NO no such mailbox\r\n"),
    ])])
    .await;
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    s.status("a\"b").await.expect("status");
    assert!(matches!(
        s.select("INBOX/Da\tOggetto", false).await,
        Err(ImapError::No { .. })
    ));
    drop(s);
    let got = h.await.expect("server");
    assert!(
        got[0][1].starts_with(b"STATUS \"a\\\"b\" ("),
        "{:?}",
        String::from_utf8_lossy(&got[0][1])
    );
    assert_eq!(&got[0][2], b"SELECT \"INBOX/Da\tOggetto\" (CONDSTORE)");
}

#[tokio::test]
async fn append_literal_plus_multiappend_appenduid_and_codes() {
    let (port, h) = fake(vec![with_login(vec![
        C("APPEND \"INBOX\" (\\Seen $Label1) \"04-Aug-2018 06:46:54 +0900\" {5+}"),
        S("{tag} OK [APPENDUID 38505 3955:3956] APPEND completed\r\n"),
        C("APPEND \"INBOX\" {3+}"),
        S("{tag} NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n"),
        C("APPEND \"INBOX\" {3+}"),
        S("{tag} OK APPEND completed\r\n"),
    ])])
    .await;
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    let d = chrono::DateTime::parse_from_rfc3339("2018-08-04T06:46:54+09:00").expect("date");
    let uids = s
        .append(
            "INBOX",
            &[
                AppendRequest {
                    flags: vec!["\\Seen".into(), "$Label1".into()],
                    internaldate: Some(d),
                    body: b"one\r\n",
                },
                AppendRequest {
                    flags: vec!["\\Recent".into()],
                    internaldate: None,
                    body: b"two\r\n",
                },
            ],
        )
        .await
        .expect("append");
    assert_eq!(uids, vec![Some(3955), Some(3956)]);
    match s
        .append(
            "INBOX",
            &[AppendRequest {
                flags: vec![],
                internaldate: None,
                body: b"abc",
            }],
        )
        .await
    {
        Err(ImapError::No {
            command,
            code,
            text,
        }) => {
            assert_eq!(command, "APPEND");
            assert_eq!(code.as_deref(), Some("OVERQUOTA"));
            assert!(text.starts_with("Quota exceeded"));
        }
        other => panic!("{other:?}"),
    }
    let none = s
        .append(
            "INBOX",
            &[AppendRequest {
                flags: vec![],
                internaldate: None,
                body: b"abc",
            }],
        )
        .await
        .expect("append");
    assert_eq!(none, vec![None]);
    drop(s);
    let got = h.await.expect("server");
    assert_eq!(
        String::from_utf8_lossy(&got[0][1]),
        "APPEND \"INBOX\" (\\Seen $Label1) \"04-Aug-2018 06:46:54 +0900\" {5+}\r\none\r\n {5+}\r\ntwo\r\n"
    );
}

#[tokio::test]
async fn append_without_literal_plus_and_early_refusal() {
    let (port, h) = fake(vec![vec![
        S("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] ready\r\n"),
        C("AUTHENTICATE PLAIN"),
        S("{tag} OK [CAPABILITY IMAP4rev1 UIDPLUS] Logged in\r\n"),
        // The fake answers "+" to the synchronising literal itself.
        C("APPEND \"INBOX\" {5}"),
        S("{tag} OK [APPENDUID 1 7] done\r\n"),
        // Refusal instead of "+": read by hand below.
    ]])
    .await;
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    assert_eq!(s.max_append_batch(), 1);
    let r = s
        .append(
            "INBOX",
            &[AppendRequest {
                flags: vec![],
                internaldate: None,
                body: b"hello",
            }],
        )
        .await;
    assert_eq!(r.expect("append"), vec![Some(7)]);
    let two = [
        AppendRequest {
            flags: vec![],
            internaldate: None,
            body: b"a",
        },
        AppendRequest {
            flags: vec![],
            internaldate: None,
            body: b"b",
        },
    ];
    assert!(matches!(
        s.append("INBOX", &two).await,
        Err(ImapError::Invalid(_))
    ));
    drop(s);
    let got = h.await.expect("server");
    assert_eq!(
        String::from_utf8_lossy(&got[0][1]),
        "APPEND \"INBOX\" {5}\r\nhello"
    );

    // The server refuses before the literal: the literal is not sent, the session stays in step.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.expect("accept");
        let mut r = BufReader::new(sock);
        r.get_mut()
            .write_all(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] ready\r\n")
            .await
            .expect("w");
        let mut line = String::new();
        r.read_line(&mut line).await.expect("r");
        let tag = line.split(' ').next().expect("tag").to_string();
        r.get_mut()
            .write_all(format!("{tag} OK [CAPABILITY IMAP4rev1] in\r\n").as_bytes())
            .await
            .expect("w");
        line.clear();
        r.read_line(&mut line).await.expect("r");
        assert!(line.ends_with("{3}\r\n"), "{line}");
        let tag = line.split(' ').next().expect("tag").to_string();
        r.get_mut()
            .write_all(
                format!(
                    "{tag} BAD Error in IMAP command APPEND: Invalid system flag \\INDEXED\r\n"
                )
                .as_bytes(),
            )
            .await
            .expect("w");
        line.clear();
        r.read_line(&mut line).await.expect("r");
        assert!(
            line.contains("NOOP"),
            "the literal must not have been sent: {line:?}"
        );
        let tag = line.split(' ').next().expect("tag").to_string();
        r.get_mut()
            .write_all(format!("{tag} OK done\r\n").as_bytes())
            .await
            .expect("w");
    });
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    let r = s
        .append(
            "INBOX",
            &[AppendRequest {
                flags: vec!["\\Indexed".into()],
                internaldate: None,
                body: b"abc",
            }],
        )
        .await;
    assert!(matches!(r, Err(ImapError::Bad { .. })), "{r:?}");
    s.noop().await.expect("noop after refusal");
    server.await.expect("server");
}

#[tokio::test]
async fn timeout_then_session_is_unusable() {
    let (port, _h) = fake(vec![with_login(vec![C("NOOP"), Sleep(3000)])]).await;
    let mut e = ep(port);
    e.timeout = Duration::from_millis(700);
    let mut s = Session::connect(&e).await.expect("connect");
    let t0 = std::time::Instant::now();
    match s.noop().await {
        Err(ImapError::Timeout { command, .. }) => assert_eq!(command, "NOOP"),
        other => panic!("{other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(s.broken().is_some());
    assert!(matches!(
        s.noop().await,
        Err(ImapError::ConnectionLost { .. })
    ));
}

#[tokio::test]
async fn dropped_connection_and_bye() {
    let (port, _h) = fake(vec![
        with_login(vec![C("NOOP"), Close]),
        with_login(vec![
            C("UID FETCH"),
            S("* BYE Connection closed. 14\r\n"),
            Close,
        ]),
        with_login(vec![C("APPEND"), S("* BYE going away\r\n"), Close]),
    ])
    .await;
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    assert!(matches!(
        s.noop().await,
        Err(ImapError::ConnectionLost { .. })
    ));
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    match s.fetch_bodies(&[1, 2, 3]).await {
        Err(ImapError::ConnectionLost { detail, .. }) => {
            assert!(detail.contains("Connection closed. 14"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    let r = s
        .append(
            "INBOX",
            &[AppendRequest {
                flags: vec![],
                internaldate: None,
                body: b"x",
            }],
        )
        .await;
    match r {
        Err(e @ ImapError::ConnectionLost { .. }) => {
            assert!(e.to_string().contains("going away"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn xoauth2_reads_the_token_file_and_answers_the_error_challenge() {
    let dir = std::env::temp_dir().join(format!("imapfleet-xoauth2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let token = dir.join("token");
    std::fs::write(&token, "tok-123\n").expect("token");
    let (port, h) = fake(vec![
        vec![
            S("* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR] ready\r\n"),
            C("AUTHENTICATE XOAUTH2 "),
            S("{tag} OK [CAPABILITY IMAP4rev1] in\r\n"),
        ],
        vec![
            S("* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR] ready\r\n"),
            C("AUTHENTICATE XOAUTH2 "),
            S("+ eyJzdGF0dXMiOiI0MDEifQ==\r\n"),
            Line,
            S("{tag} NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"),
        ],
    ])
    .await;
    let mut e = ep(port);
    e.auth = AuthMethod::XOAuth2 {
        token_file: token.clone(),
    };
    e.user = "me@example.com".into();
    Session::connect(&e).await.expect("xoauth2");
    assert!(matches!(
        Session::connect(&e).await,
        Err(ImapError::Auth { .. })
    ));
    let got = h.await.expect("server");
    use base64::Engine as _;
    let b64 = String::from_utf8_lossy(&got[0][0])
        .trim_start_matches("AUTHENTICATE XOAUTH2 ")
        .to_string();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("b64");
    assert_eq!(raw, b"user=me@example.com\x01auth=Bearer tok-123\x01\x01");
    assert_eq!(got[1][1], b"", "empty response to the error challenge");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn capabilities_announced_during_login_are_used() {
    // BR-50's rule with other values: an untagged CAPABILITY before the tagged OK of LOGIN or
    // AUTHENTICATE (with and without SASL-IR) describes the logged-in state. The scripts end right
    // after the login: a CAPABILITY command would find the connection closed.
    let (port, _h) = fake(vec![
        vec![
            S("* OK [CAPABILITY IMAP4rev1 AUTH=LOGIN LOGIN-REFERRALS] ready\r\n"),
            C("LOGIN"),
            S("* CAPABILITY IMAP4rev1 QRESYNC SPECIAL-USE X-CUSTOM=1 UIDPLUS\r\n{tag} OK Logged in\r\n"),
            C("NOOP"),
            S("{tag} OK done\r\n"),
        ],
        vec![
            S("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] ready\r\n"),
            C("AUTHENTICATE PLAIN "),
            S("* CAPABILITY IMAP4rev1 QRESYNC SPECIAL-USE X-CUSTOM=1 UIDPLUS\r\n{tag} OK Authenticated\r\n"),
            C("NOOP"),
            S("{tag} OK done\r\n"),
        ],
        vec![
            S("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n"),
            C("AUTHENTICATE PLAIN"),
            S("+ \r\n"),
            Line,
            S("* CAPABILITY IMAP4rev1 QRESYNC SPECIAL-USE X-CUSTOM=1 UIDPLUS\r\n{tag} OK Authenticated\r\n"),
            C("NOOP"),
            S("{tag} OK done\r\n"),
        ],
    ])
    .await;
    for _ in 0..3 {
        let mut s = Session::connect(&ep(port)).await.expect("connect");
        for c in ["QRESYNC", "SPECIAL-USE", "X-CUSTOM=1", "UIDPLUS"] {
            assert!(s.capabilities().has(c), "{c}: {:?}", s.capabilities());
        }
        assert!(
            !s.capabilities().has("LOGIN-REFERRALS") && !s.capabilities().has("SASL-IR"),
            "the greeting's pre-login list is not kept: {:?}",
            s.capabilities()
        );
        s.noop()
            .await
            .expect("the next command is the NOOP, not CAPABILITY");
    }
}

#[tokio::test]
async fn fetch_meta_leaves_out_a_uid_gone_by_the_second_fetch() {
    // The missing-item retry: a UID the second FETCH does not return at all was expunged in
    // between; one it returns still incomplete stays an error (see fetch_with_a_missing_item...).
    let (port, _h) = fake(vec![with_login(vec![
        C("UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER])"),
        S("* 1 FETCH (UID 7 FLAGS (\\Seen) RFC822.SIZE 3 INTERNALDATE \"01-Feb-2022 08:00:00 +0000\" BODY[HEADER] {2}\r\n\r\n)\r\n\
* 2 FETCH ( UID 8  )\r\n* 3 FETCH (UID 9 FLAGS ( \\Flagged  $Label3 ) RFC822.SIZE 5 INTERNALDATE \"01-Feb-2022 08:00:00 +0000\")\r\n{tag} OK done\r\n"),
        C("UID FETCH 8:9 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER])"),
        S("* 2 FETCH (UID 9 BODY[HEADER] {2}\r\n\r\n)\r\n{tag} OK done\r\n"),
    ])])
    .await;
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    let m = s.fetch_meta("1:*", &[]).await.expect("listing");
    assert_eq!(m.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![7, 9]);
    assert_eq!(
        m[1].flags,
        vec!["\\Flagged".to_string(), "$Label3".to_string()]
    );
}

#[tokio::test]
async fn fetch_bodies_refetches_a_message_answered_without_its_body() {
    let (port, _h) = fake(vec![with_login(vec![
        // 5 only gets an (unsolicited-looking) FLAGS update, 6 its body.
        C("UID FETCH 5:6 (UID BODY.PEEK[])"),
        S("* 1 FETCH (UID 5 FLAGS (\\Seen))\r\n* 2 FETCH (UID 6 BODY[] {3}\r\nabc)\r\n{tag} OK done\r\n"),
        C("UID FETCH 5 (UID BODY.PEEK[])"),
        S("* 1 FETCH (UID 5 BODY[] {4}\r\nwxyz)\r\n{tag} OK done\r\n"),
        // Twice without a body: an error, not "vanished".
        C("UID FETCH 11 (UID BODY.PEEK[])"),
        S("* 4 FETCH (UID 11 RFC822.SIZE 40)\r\n{tag} OK done\r\n"),
        C("UID FETCH 11 (UID BODY.PEEK[])"),
        S("* 4 FETCH (UID 11 RFC822.SIZE 40)\r\n{tag} OK done\r\n"),
        // Gone on the second try: vanished.
        C("UID FETCH 12 (UID BODY.PEEK[])"),
        S("* 5 FETCH (FLAGS () UID 12)\r\n{tag} OK done\r\n"),
        C("UID FETCH 12 (UID BODY.PEEK[])"),
        S("{tag} OK done\r\n"),
        C("NOOP"),
        S("{tag} OK done\r\n"),
    ])])
    .await;
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    let b = s.fetch_bodies(&[5, 6]).await.expect("bodies");
    assert_eq!(b, vec![(5, b"wxyz".to_vec()), (6, b"abc".to_vec())]);
    assert!(matches!(
        s.fetch_bodies(&[11]).await,
        Err(ImapError::Protocol { .. })
    ));
    assert_eq!(s.fetch_bodies(&[12]).await.expect("vanished"), vec![]);
    s.noop().await.expect("in step");
}

#[tokio::test]
async fn status_is_the_one_of_the_mailbox_asked_about() {
    let (port, _h) = fake(vec![with_login(vec![
        C("STATUS \"Sent\""),
        S("* STATUS INBOX (MESSAGES 9 UIDNEXT 10)\r\n* STATUS \"Sent\" ( MESSAGES 3  UIDNEXT 4 UIDVALIDITY 2  ) \r\n{tag} OK done\r\n"),
        C("STATUS \"INBOX\""),
        S("* STATUS \"Sent\" (MESSAGES 3)\r\n* STATUS inbox (MESSAGES 12 UIDNEXT 40 UIDVALIDITY 5)   \r\n{tag} OK done\r\n"),
        C("STATUS \"Archive\""),
        S("* STATUS \"Archive/2019\" (MESSAGES 1)\r\n{tag} OK done\r\n"),
        C("NOOP"),
        S("{tag} OK done\r\n"),
    ])])
    .await;
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    let st = s.status("Sent").await.expect("status");
    assert_eq!(
        (st.messages, st.uidnext, st.uidvalidity),
        (Some(3), Some(4), Some(2))
    );
    let st = s.status("INBOX").await.expect("status");
    assert_eq!(
        (st.messages, st.uidnext, st.uidvalidity),
        (Some(12), Some(40), Some(5))
    );
    assert!(matches!(
        s.status("Archive").await,
        Err(ImapError::Protocol { .. })
    ));
    s.noop().await.expect("in step");
}

#[tokio::test]
async fn padded_lists_in_select_and_fetch() {
    // BR-04/05's rule beyond STATUS: padding after "(", before ")" and doubled between elements,
    // in FLAGS, PERMANENTFLAGS, response codes and FETCH.
    let (port, _h) = fake(vec![with_login(vec![
        C("SELECT \"INBOX\""),
        S("* FLAGS ( \\Answered  \\Seen $Junk  )\r\n* OK [PERMANENTFLAGS ( \\Seen  $Junk \\* )] ok\r\n\
* 2 EXISTS\r\n* OK [UIDVALIDITY 77 ] v\r\n* OK [ UIDNEXT 9] n\r\n{tag} OK [READ-WRITE] done\r\n"),
        C("UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (Message-Id)])"),
        S("* 1 FETCH ( UID 3  FLAGS ( \\Seen  $Junk )  RFC822.SIZE 10 INTERNALDATE \"01-Feb-2022 08:00:00 +0000\" BODY[HEADER.FIELDS (MESSAGE-ID )] {2}\r\n\r\n )\r\n{tag} OK done\r\n"),
    ])])
    .await;
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    let info = s.select("INBOX", false).await.expect("select");
    assert_eq!(info.flags, vec!["\\Answered", "\\Seen", "$Junk"]);
    assert_eq!(
        info.permanent_flags,
        Some(vec![
            "\\Seen".to_string(),
            "$Junk".to_string(),
            "\\*".to_string()
        ])
    );
    assert_eq!((info.uidvalidity, info.uidnext), (Some(77), Some(9)));
    let m = s
        .fetch_meta("1:*", &["Message-Id".into()])
        .await
        .expect("listing");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].flags, vec!["\\Seen", "$Junk"]);
}

#[tokio::test]
async fn names_are_utf8_after_enable_utf8_accept() {
    // BR-46's rule: after `ENABLE UTF8=ACCEPT` LIST names are UTF-8 as they stand ("A&-B" is not
    // modified UTF-7 then); before it they are decoded as mUTF-7.
    let list = "* LIST (\\HasNoChildren) \"/\" \"A&-B\"\r\n* LIST (\\HasNoChildren) \"/\" \"Entw&APw-rfe\"\r\n{tag} OK done\r\n";
    let (port, h) = fake(vec![vec![
        S("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR ENABLE UTF8=ACCEPT] ready\r\n"),
        C("AUTHENTICATE PLAIN "),
        S("{tag} OK [CAPABILITY IMAP4rev1 ENABLE UTF8=ACCEPT] in\r\n"),
        C("LIST"),
        S(list),
        C("ENABLE UTF8=ACCEPT"),
        S("* ENABLED UTF8=ACCEPT\r\n{tag} OK enabled\r\n"),
        C("LIST"),
        S("* LIST (\\HasNoChildren) \"/\" \"A&-B\"\r\n* LIST (\\HasNoChildren) \"/\" {9}\r\nEntwürfe\r\n{tag} OK done\r\n"),
    ]])
    .await;
    let mut s = Session::connect(&ep(port)).await.expect("connect");
    let before: Vec<String> = s
        .list()
        .await
        .expect("LIST")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(before, vec!["A&B", "Entwürfe"]);
    assert_eq!(
        s.enable(&["UTF8=ACCEPT"]).await.expect("ENABLE"),
        vec!["UTF8=ACCEPT"]
    );
    let after = s.list().await.expect("LIST");
    let names: Vec<(&str, &str)> = after
        .iter()
        .map(|e| (e.raw_name.as_str(), e.name.as_str()))
        .collect();
    assert_eq!(names, vec![("A&-B", "A&-B"), ("Entwürfe", "Entwürfe")]);
    drop(s);
    h.await.expect("server");
}
