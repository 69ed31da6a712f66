//! Metric names: the ones PromQL expressions query, and the ones the fleet exports.

use std::collections::{BTreeMap, BTreeSet};

/// Grafana's variables replaced by values PromQL accepts (for parsing dashboard queries).
pub fn substitute_grafana_variables(expr: &str) -> String {
    let mut s = expr.to_string();
    for (var, val) in [
        ("$__rate_interval", "5m"),
        ("$__interval", "1m"),
        ("$__range", "6h"),
        ("${__rate_interval}", "5m"),
        ("${__interval}", "1m"),
        ("${__range}", "6h"),
    ] {
        s = s.replace(var, val);
    }
    // Template variables ($job, ${job}) appear inside label-matcher strings only.
    let re = regex::Regex::new(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?").unwrap();
    re.replace_all(&s, ".*").into_owned()
}

/// Parse a PromQL expression (Prometheus's grammar, via the `promql-parser` crate) and return the
/// metric names its selectors name. An error is a syntax error, or a selector without a metric name.
pub fn promql_metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let ast = promql_parser::parser::parse(expr)?;
    let mut names = BTreeSet::new();
    collect(&ast, &mut names)?;
    Ok(names)
}

fn selector_name(vs: &promql_parser::parser::VectorSelector) -> Result<String, String> {
    if let Some(n) = &vs.name {
        return Ok(n.clone());
    }
    vs.matchers
        .matchers
        .iter()
        .find(|m| m.name == "__name__" && matches!(m.op, promql_parser::label::MatchOp::Equal))
        .map(|m| m.value.clone())
        .ok_or_else(|| format!("a selector without a metric name: {vs}"))
}

fn collect(e: &promql_parser::parser::Expr, out: &mut BTreeSet<String>) -> Result<(), String> {
    use promql_parser::parser::Expr;
    match e {
        Expr::Aggregate(a) => {
            collect(&a.expr, out)?;
            if let Some(p) = &a.param {
                collect(p, out)?;
            }
        }
        Expr::Unary(u) => collect(&u.expr, out)?,
        Expr::Binary(b) => {
            collect(&b.lhs, out)?;
            collect(&b.rhs, out)?;
        }
        Expr::Paren(p) => collect(&p.expr, out)?,
        Expr::Subquery(s) => collect(&s.expr, out)?,
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        Expr::VectorSelector(vs) => {
            out.insert(selector_name(vs)?);
        }
        Expr::MatrixSelector(ms) => {
            out.insert(selector_name(&ms.vs)?);
        }
        Expr::Call(c) => {
            for a in &c.args.args {
                collect(a, out)?;
            }
        }
        Expr::Extension(_) => return Err("unknown PromQL extension".into()),
    }
    Ok(())
}

/// The type of each metric family in Prometheus text exposition (`# TYPE name type`), plus any
/// sample name without a TYPE line (as "untyped").
pub fn families_from_text(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(n), Some(t)) = (it.next(), it.next()) {
                out.insert(n.to_string(), t.to_string());
            }
        }
    }
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        if name.is_empty() || out.contains_key(&name) {
            continue;
        }
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| out.contains_key(*b));
        if base.is_none() {
            out.insert(name, "untyped".to_string());
        }
    }
    out
}

/// The series names a family of this type exposes (a histogram: `_bucket`, `_sum`, `_count`).
pub fn series_names(family: &str, typ: &str) -> Vec<String> {
    match typ {
        "histogram" => vec![
            format!("{family}_bucket"),
            format!("{family}_sum"),
            format!("{family}_count"),
        ],
        "summary" => vec![
            family.to_string(),
            format!("{family}_sum"),
            format!("{family}_count"),
        ],
        _ => vec![family.to_string()],
    }
}

/// Every series name the families expose.
pub fn all_series(families: &BTreeMap<String, String>) -> BTreeSet<String> {
    families
        .iter()
        .flat_map(|(f, t)| series_names(f, t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(e: &str) -> Vec<String> {
        promql_metric_names(&substitute_grafana_variables(e))
            .unwrap()
            .into_iter()
            .collect()
    }

    #[test]
    fn promql_names() {
        assert_eq!(
            names(
                r#"sum by (imapfleet_job, class) (rate(imapfleet_errors_total{imapfleet_job=~"$job", class!="x"}[$__rate_interval]))"#
            ),
            vec!["imapfleet_errors_total"]
        );
        assert_eq!(
            names("histogram_quantile(0.95, sum by (le) (rate(a_bucket[5m]))) / on(job) group_left b_total offset 1h"),
            vec!["a_bucket", "b_total"]
        );
        assert_eq!(
            names("increase(x[10m]) == 0 and on() y > 1e3"),
            vec!["x", "y"]
        );
        assert_eq!(names("sum(rate(m[${__rate_interval}])) * 8"), vec!["m"]);
        assert_eq!(names(r#"{__name__="n", a="b"}"#), vec!["n"]);
        assert!(promql_metric_names("sum(rate(x[5m])").is_err());
        assert!(promql_metric_names(r#"{a="b"}"#).is_err());
    }

    #[test]
    fn text_families() {
        let t = "# HELP a_total x\n# TYPE a_total counter\na_total{imapfleet_job=\"j\"} 3\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\nloose 2\n";
        let f = families_from_text(t);
        assert_eq!(f["a_total"], "counter");
        assert_eq!(f["h"], "histogram");
        assert_eq!(f["loose"], "untyped");
        assert_eq!(f.len(), 3);
        assert!(all_series(&f).contains("h_bucket"));
    }
}
