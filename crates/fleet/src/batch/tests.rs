use super::*;

fn imapsync(text: &str) -> Batch {
    parse_batch(text, BatchFormat::Imapsync, "")
}

fn errors(b: &Batch) -> Vec<String> {
    b.errors.iter().map(|e| e.to_string()).collect()
}

fn one_error(text: &str) -> BatchError {
    let b = imapsync(text);
    assert_eq!(
        b.errors.len(),
        1,
        "expected one error for {text:?}, got {:?}",
        errors(&b)
    );
    b.errors[0].clone()
}

#[test]
fn reads_imapsync_lines_with_comments_blanks_and_crlf() {
    let text = "# a comment\r\n\r\nh1;u1;p1;h2;u2;p2;\r\n  # indented comment\nh1;u3;p w;h2;u3;p;--ssl1 --port2 1993;\nh1;u4;p;h2;u4;p\n";
    let b = imapsync(text);
    assert!(b.is_clean(), "{:?}", errors(&b));
    assert_eq!(b.accounts.len(), 3);
    assert_eq!(b.accounts[0].line, 3);
    assert_eq!(b.accounts[0].side1.user, "u1");
    assert_eq!(b.accounts[0].side1.password.expose(), "p1");
    assert_eq!(b.accounts[1].line, 5);
    assert_eq!(
        b.accounts[1].side1.password.expose(),
        "p w",
        "spaces in a password are kept"
    );
    assert_eq!(b.accounts[1].side1.security, Some(Security::Tls));
    assert_eq!(b.accounts[1].side1.effective_port(), 993);
    assert_eq!(b.accounts[1].side2.port, Some(1993));
    assert_eq!(b.accounts[2].line, 6, "the closing ; is optional");
}

#[test]
fn every_bad_line_is_reported_with_its_number() {
    let text = "h1;u1;p1;h2;u2;p2;\n\
                h1;u2;p1;h2\n\
                h1;u3;p1;h2;u3;p2;--port1 99999;\n\
                h1;u4;p1;h2;u4;p2;--bogus;\n\
                # fine\n\
                h1;u1;p1;h2;u2;p2;\n\
                ;u6;p;h2;u6;p;\n";
    let b = imapsync(text);
    let e = errors(&b);
    assert_eq!(b.accounts.len(), 1);
    assert_eq!(e.len(), 5, "{e:?}");
    assert!(
        e[0].starts_with("line 2: 4 fields") && e[0].contains("missing user2, password2"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("line 3: ") && e[1].contains("not a port"),
        "{}",
        e[1]
    );
    assert!(
        e[2].starts_with("line 4: ") && e[2].contains("unknown option --bogus"),
        "{}",
        e[2]
    );
    assert!(
        e[3].starts_with("line 6: duplicate account pair") && e[3].contains("line 1"),
        "{}",
        e[3]
    );
    assert!(e[4].starts_with("line 7: missing host1"), "{}", e[4]);
}

#[test]
fn malformed_lines() {
    let cases: &[(&str, &str)] = &[
        ("h1", "missing user1, password1, host2, user2, password2"),
        ("h1;u;p;h2;u;", "missing password2"),
        ("h1;;p;h2;u;p;", "missing user1"),
        ("h1;u;;h2;u;p;", "missing password1"),
        ("h1;u;p;;u;p;", "missing host2"),
        ("h1;u;p;h2;u;p;--x;extra;", "at most 7"),
        ("h 1;u;p;h2;u;p;", "not a host name"),
        ("h1;u;p;h2;u;p;--port1 0;", "not a port"),
        ("h1;u;p;h2;u;p;--port2 abc;", "not a port"),
        ("h1;u;p;h2;u;p;--port1;", "--port1 needs a value"),
        ("h1;u;p;h2;u;p;--ssl1 --notls1;", "choose one of --ssl1"),
        (
            "h1;u;p;h2;u;p;--authmech2 CRAM-MD5;",
            "expected LOGIN or PLAIN",
        ),
        (
            "h1;u;p;h2;u;p;--authuser1 admin --authmech1 LOGIN;",
            "needs PLAIN",
        ),
        ("h1;u;p;h2;u;p;--sep1 ab;", "not one character"),
        ("h1;u;p;h2;u;p;--exclude \"(\";", "bad regex"),
        ("h1;u;p;h2;u;p;--include [a;", "unclosed"), // the ; splits the field: tokenizer sees `[a`... then field
        ("h1;u;p;h2;u;p;--f1f2 nothing;", "--f1f2"),
        ("h1;u;p;h2;u;p;--regextrans2 x/a/b/;", "--regextrans2"),
        ("h1;u;p;h2;u;p;--maxsize -3;", "--maxsize"),
        ("h1;u;p;h2;u;p;--maxage soon;", "--maxage"),
        ("h1;u;p;h2;u;p;--timeout 0;", "--timeout"),
        ("h1;u;p;h2;u;p;--folder \"INBOX;", "unclosed"),
        (
            "h1;u;p;h2;u;p;stray;",
            "unexpected text in the options field (word 1, 5 characters",
        ),
        (
            "h1;u;p;h2;u;p;--password1 x;",
            "--password1: secrets do not belong",
        ),
        ("h1;u;p;h2;u;p;--passfile1 /x;", "carries its password"),
        ("h1;u;p;h2;u;p;--ssl1=maybe;", "yes/no"),
    ];
    for (line, want) in cases {
        let b = imapsync(line);
        let e = errors(&b);
        assert!(!e.is_empty(), "{line:?} was accepted");
        assert!(
            e.iter().any(|m| m.contains(want)),
            "{line:?}: expected {want:?} in {e:?}"
        );
        assert!(
            e.iter().all(|m| m.starts_with("line 1: ")),
            "{line:?}: {e:?}"
        );
        assert!(b.accounts.is_empty());
    }
}

#[test]
fn several_problems_of_one_line_are_all_told() {
    let e = one_error("h1;u;p;h2;u;p;--port1 x --bogus --sep2 ab;");
    assert!(
        e.reason.contains("not a port")
            && e.reason.contains("--bogus")
            && e.reason.contains("not one character"),
        "{e}"
    );
}

#[test]
fn passwords_never_appear_in_errors() {
    let b = imapsync("h1;u;S3cr3t-pw;h2;u;An0ther;--bogus;\nh1;u;S3cr3t-pw;h2\n");
    for e in errors(&b) {
        assert!(!e.contains("S3cr3t") && !e.contains("An0ther"), "{e}");
    }
    let b = imapsync("h1;u;S3cr3t-pw;h2;u;An0ther;\n");
    let dbg = format!("{:?}", b.accounts);
    assert!(!dbg.contains("S3cr3t") && !dbg.contains("An0ther"), "{dbg}");
}

/// The whole kind: whatever is wrong with a line, no password of it (nor a secret put among its
/// options, nor one in the default options) is shown in an error.
#[test]
fn no_secret_in_any_batch_error() {
    let cases = [
        // A ';' inside password1 shifts every later field: the tail of password2 lands in options.
        (
            "h1;u;pa;ss1word;h1;u;Hunter2pw;",
            vec!["ss1word", "Hunter2pw"],
        ),
        ("h1;u;p1x;h2;u;p2x;--password1 Zq9Leak2;", vec!["Zq9Leak2"]),
        ("h1;u;p1x;h2;u;p2x;--password2=Zq9Leak3;", vec!["Zq9Leak3"]),
        (
            "h1;u;p1x;h2;u;p2x;--oauthaccesstoken1 tok-Zq9;",
            vec!["tok-Zq9"],
        ),
        // Bad options next to the passwords: the passwords are not quoted back.
        (
            "h1;u;S3cr3t;h2 x;u;An0ther;--port1 S3cr3t;",
            vec!["S3cr3t", "An0ther"],
        ),
        (
            "h1;u;S3cr3t;h2;u;An0ther;--folder;",
            vec!["S3cr3t", "An0ther"],
        ),
    ];
    for (line, secrets) in cases {
        let b = imapsync(line);
        let e = errors(&b);
        assert!(!e.is_empty(), "{line:?} was accepted");
        for msg in &e {
            for sec in &secrets {
                assert!(!msg.contains(sec), "{line:?}: {sec:?} shown in {msg:?}");
            }
        }
    }
    // A secret in the default options: reported once, as the defaults' problem, not shown.
    let b = parse_batch(
        "h1;u;p;h2;u;p;\nh1;v;p;h2;v;p;\n",
        BatchFormat::Imapsync,
        "--password2 Zq9Leak",
    );
    let e = errors(&b);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("default options (--defaults): --password2"),
        "{e:?}"
    );
    assert!(!e[0].contains("Zq9Leak"), "{e:?}");
}

#[test]
fn options_are_parsed() {
    let b = imapsync(
        "h1;u;p;h2;v;q;--ssl1 --tls2 --cafile2 /ca.pem --insecure1 --authuser1 admin --authmech1 plain \
         --folder INBOX --folder 'My Stuff' --exclude ^Junk --f1f2 \"Old name=New name\" \
         --regextrans2 's/\\./_/g' --subfolder2 Migrated --automap --useheader Message-Id \
         --maxsize=1000000 --maxage 30 --minage 1.5 --copydeleted --noresyncflags --timeout 60 \
         --sep1 . --prefix2 INBOX.;",
    );
    assert!(b.is_clean(), "{:?}", errors(&b));
    let a = &b.accounts[0];
    assert_eq!(a.side1.security, Some(Security::Tls));
    assert_eq!(a.side2.security, Some(Security::StartTls));
    assert_eq!(a.side2.cafile.as_deref(), Some(Path::new("/ca.pem")));
    assert!(a.side1.insecure && !a.side2.insecure);
    assert_eq!(a.side1.authuser.as_deref(), Some("admin"));
    assert_eq!(a.side1.authmech.as_deref(), Some("PLAIN"));
    assert_eq!(a.side1.sep, Some('.'));
    assert_eq!(a.side2.prefix.as_deref(), Some("INBOX."));
    let o = &a.options;
    assert_eq!(o.folders, vec!["INBOX", "My Stuff"]);
    assert_eq!(o.exclude, vec!["^Junk"]);
    assert_eq!(
        o.f1f2,
        vec![("Old name".to_string(), "New name".to_string())]
    );
    assert_eq!(o.regextrans2, vec!["s/\\./_/g"]);
    assert_eq!(o.subfolder2.as_deref(), Some("Migrated"));
    assert!(o.automap && o.copydeleted && o.noresyncflags);
    assert_eq!(o.useheader, vec!["Message-Id"]);
    assert_eq!(o.maxsize, Some(1_000_000));
    assert_eq!((o.maxage, o.minage), (Some(30.0), Some(1.5)));
    assert_eq!(o.timeout, Some(60));
}

#[test]
fn defaults_apply_to_every_line_and_lines_override() {
    let b = parse_batch(
        "h1;u;p;h2;u;p;\nh1;v;p;h2;v;p;--cafile1 /other.pem;\n",
        BatchFormat::Imapsync,
        "--cafile1 /ca.pem --timeout 30",
    );
    assert!(b.is_clean(), "{:?}", errors(&b));
    assert_eq!(
        b.accounts[0].side1.cafile.as_deref(),
        Some(Path::new("/ca.pem"))
    );
    assert_eq!(
        b.accounts[1].side1.cafile.as_deref(),
        Some(Path::new("/other.pem"))
    );
    assert_eq!(b.accounts[1].options.timeout, Some(30));
    let b = parse_batch("h1;u;p;h2;u;p;\n", BatchFormat::Imapsync, "--what");
    assert!(errors(&b)[0].contains("--what"));
    let b = parse_batch("h1;u;p;h2;u;p;\n", BatchFormat::Imapsync, "\"open");
    assert_eq!(b.errors[0].line, 0);
}

#[test]
fn empty_batch_is_an_error() {
    let b = imapsync("# nothing\n\n");
    assert_eq!(errors(&b), vec!["no account in the batch"]);
}

#[test]
fn duplicates_compare_hosts_case_insensitively_and_ports() {
    let b = imapsync("H1;u;p;h2;u;p;\nh1;u;p;H2;u;p;\nh1;u;p;h2;u;p;--port1 144;\nh1;u;p;h2;u;p;--ssl1 --port1 143;\n");
    let e = errors(&b);
    assert_eq!(b.accounts.len(), 2, "{e:?}");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("line 2: duplicate"));
    assert!(
        e[1].starts_with("line 4: duplicate"),
        "same host, port and users: {e:?}"
    );
}

#[test]
fn tokenizer() {
    assert_eq!(
        tokenize("  a  'b c' \"d \\\" e\" f\\ g ").unwrap(),
        vec!["a", "b c", "d \" e", "f g"]
    );
    assert_eq!(tokenize("").unwrap(), Vec::<String>::new());
    assert_eq!(tokenize("''").unwrap(), vec![""]);
    assert!(tokenize("'open").is_err());
    assert!(tokenize("\"open").is_err());
    assert!(tokenize("end\\").is_err());
}

#[test]
fn reads_csv_with_named_columns() {
    let text = "# accounts\r\nhost1,user1,password1,host2,user2,password2,port1,ssl2,exclude,options\r\n\
                a.example,alice,\"pa,ss\",b.example,alice,pw,1143,yes,^Junk,\"--folder INBOX --folder Sent\"\r\n\
                \r\n\
                a.example,bob,pw,b.example,bob,pw,,no,,\r\n";
    let b = parse_batch(text, BatchFormat::detect(None, text), "");
    assert!(b.is_clean(), "{:?}", errors(&b));
    assert_eq!(b.accounts.len(), 2);
    let a = &b.accounts[0];
    assert_eq!(a.line, 3);
    assert_eq!(a.side1.password.expose(), "pa,ss");
    assert_eq!(a.side1.port, Some(1143));
    assert_eq!(a.side2.security, Some(Security::Tls));
    assert_eq!(a.options.exclude, vec!["^Junk"]);
    assert_eq!(a.options.folders, vec!["INBOX", "Sent"]);
    assert_eq!(b.accounts[1].line, 5);
    assert_eq!(b.accounts[1].side2.security, None);
}

#[test]
fn csv_problems() {
    let b = parse_batch(
        "host1,user1,password1,host2,user2\nh,u,p,h,u\n",
        BatchFormat::Csv,
        "",
    );
    assert!(
        errors(&b)[0].contains("missing column password2"),
        "{:?}",
        errors(&b)
    );
    assert!(b.accounts.is_empty());
    let b = parse_batch(
        "host1,user1,password1,host2,user2,password2,colour\nh,u,p,h,u,p,red\n",
        BatchFormat::Csv,
        "",
    );
    assert!(
        errors(&b)[0].starts_with("line 1: ")
            && errors(&b)[0].contains("unknown column \"colour\"")
    );
    let text = "host1,user1,password1,host2,user2,password2,port2,ssl1\n\
                h,u,p,h,u,p,x,\n\
                h,v,p,h,v,p,,perhaps\n\
                h,w,p,h,w\n\
                h,x,,h,x,p,,\n\
                h,y,p,h,y,p,,\n";
    let b = parse_batch(text, BatchFormat::Csv, "");
    let e = errors(&b);
    assert_eq!(b.accounts.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("line 2: ") && e[0].contains("not a port"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("line 3: ") && e[1].contains("yes/no"),
        "{e:?}"
    );
    assert!(
        e[2].starts_with("line 4: ") && e[2].contains("5 fields"),
        "{e:?}"
    );
    assert!(e[3].starts_with("line 5: missing password1"), "{e:?}");
}

#[test]
fn reads_yaml() {
    let text = "# batch\n- host1: a\n  user1: alice\n  password1: \"x: y\"\n  host2: b\n  user2: alice\n  password2: pw\n  port1: 1143\n  exclude: [\"^Junk\", \"^Spam\"]\n  ssl2: true\n- host1: a\n  user1: bob\n  password1: pw\n  host2: b\n  user2: bob\n  password2: pw\n  colour: red\n- host1: a\n  user1: carol\n  host2: b\n";
    let b = parse_batch(text, BatchFormat::detect(None, text), "");
    let e = errors(&b);
    assert_eq!(b.accounts.len(), 1, "{e:?}");
    let a = &b.accounts[0];
    assert_eq!(a.line, 2);
    assert_eq!(a.side1.password.expose(), "x: y");
    assert_eq!(a.side1.port, Some(1143));
    assert_eq!(a.options.exclude, vec!["^Junk", "^Spam"]);
    assert_eq!(a.side2.security, Some(Security::Tls));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("line 11: unknown key \"colour\""), "{e:?}");
    assert!(
        e[1].starts_with("line 18: missing password1, user2, password2")
            || e[1].starts_with("line 18: missing"),
        "{e:?}"
    );
    let b = parse_batch("- [1, 2\n", BatchFormat::Yaml, "");
    assert!(errors(&b)[0].contains("YAML"), "{:?}", errors(&b));
}

#[test]
fn detects_formats() {
    assert_eq!(
        BatchFormat::detect(Some(Path::new("x.CSV")), ""),
        BatchFormat::Csv
    );
    assert_eq!(
        BatchFormat::detect(Some(Path::new("x.yml")), ""),
        BatchFormat::Yaml
    );
    assert_eq!(
        BatchFormat::detect(Some(Path::new("x.txt")), "# c\nh;u;p;h;u;p;\n"),
        BatchFormat::Imapsync
    );
    assert_eq!(
        BatchFormat::detect(None, "# c\nhost1,user1,password1,host2,user2,password2\n"),
        BatchFormat::Csv
    );
    assert_eq!(BatchFormat::detect(None, "- host1: a\n"), BatchFormat::Yaml);
    // A password with commas does not make an imapsync line a CSV header.
    assert_eq!(
        BatchFormat::detect(None, "host1;u;a,b;h;u;p;\n"),
        BatchFormat::Imapsync
    );
}
