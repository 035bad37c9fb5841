//! HTML building blocks of the back office: the one escaping helper every
//! stored or requested string goes through, URL encoding, and the page
//! chrome (inline CSS, navigation, sign-out form).

use std::fmt::Write;

/// Escapes `text` for HTML text and double-quoted attribute values: `&`,
/// `<`, `>`, `"` and `'` become entities, so no stored string (a customer
/// id, a description, an operator) can open a tag or leave an attribute.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes `text` for a URL path segment or query value: every
/// byte but `A-Z a-z 0-9 - _ . ~` is escaped.
pub(crate) fn url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A query string (`a=1&b=2`) of the pairs whose value is not empty.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", url(k), url(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The signed-in chrome around a page's `body`: the tenant's name, the
/// navigation (with `current` marked) and the sign-out form carrying
/// `csrf`.
pub(crate) fn page(title: &str, tenant: &str, current: &str, csrf: &str, body: &str) -> String {
    let mut nav = String::new();
    for (href, label) in [
        ("/admin/", "Dashboard"),
        ("/admin/customers", "Customers"),
        ("/admin/programs", "Programs"),
    ] {
        let mark = if label == current { " class=\"on\"" } else { "" };
        let _ = write!(nav, "<a href=\"{href}\"{mark}>{label}</a>");
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · {tenant} · accrue</title><style>{CSS}</style></head><body>\
<header><strong>accrue</strong> <span class=\"tenant\">{tenant}</span><nav>{nav}</nav>\
<form method=\"post\" action=\"/admin/logout\" class=\"out\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<button type=\"submit\">Sign out</button></form></header><main><h1>{title}</h1>{body}</main></body></html>",
        title = esc(title),
        tenant = esc(tenant),
        csrf = esc(csrf),
    )
}

/// A page outside the session (sign-in, errors before sign-in).
pub(crate) fn bare(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · accrue</title><style>{CSS}</style></head><body>\
<header><strong>accrue</strong> back office</header><main><h1>{title}</h1>{body}</main></body></html>",
        title = esc(title)
    )
}

/// Inline styles: no file, no CDN.
const CSS: &str = "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2430;background:#f5f6f8}\
header{display:flex;gap:1.2em;align-items:center;background:#1d2430;color:#fff;padding:.6em 1.2em}\
header .tenant{opacity:.8}header nav{display:flex;gap:.8em;flex:1}header a{color:#cfd8e6;text-decoration:none}\
header a.on{color:#fff;border-bottom:2px solid #4fa3ff}header form.out{margin:0}\
main{padding:1em 1.6em;max-width:1100px}h1{font-size:1.4em;margin:.3em 0 .6em}h2{font-size:1.1em;margin:1.4em 0 .5em}\
table{border-collapse:collapse;background:#fff;margin:.4em 0 1em;min-width:340px}\
th,td{padding:.3em .7em;border-bottom:1px solid #e3e6eb;text-align:left}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
tfoot td{font-weight:600;border-top:2px solid #c9ced6}.grid{display:flex;flex-wrap:wrap;gap:1.6em}\
form.inline{display:flex;gap:.6em;align-items:end;flex-wrap:wrap;margin:.4em 0 1em}label{display:flex;flex-direction:column;font-size:.9em}\
input,select,button{font:inherit;padding:.3em .5em}button{background:#2f6fda;color:#fff;border:0;border-radius:3px;cursor:pointer}\
.err{color:#b3261e;font-weight:600}.ok{color:#1e7a34;font-weight:600}.muted{color:#6b7380}\
.card{background:#fff;padding:.8em 1em;border-radius:4px;margin:.6em 0}svg{background:#fff;border-radius:4px}\
.links a{margin-right:1em}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_strings_are_escaped() {
        for (hostile, escaped) in [
            ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
            ("\" onmouseover=\"x", "&quot; onmouseover=&quot;x"),
            ("' autofocus onfocus='x", "&#39; autofocus onfocus=&#39;x"),
            ("a & b &amp;", "a &amp; b &amp;amp;"),
            (
                "</td></tr><img src=x onerror=alert(1)>",
                "&lt;/td&gt;&lt;/tr&gt;&lt;img src=x onerror=alert(1)&gt;",
            ),
            ("plain c-1001 кафе", "plain c-1001 кафе"),
        ] {
            let out = esc(hostile);
            assert_eq!(out, escaped);
            assert!(!out.contains(['<', '>', '"', '\'']), "{out}");
        }
    }

    #[test]
    fn urls_encode_everything_but_unreserved_bytes() {
        assert_eq!(url("c 1/2?x=&y#"), "c%201%2F2%3Fx%3D%26y%23");
        assert_eq!(url("2026-11-01T00:00:00+04:00"), "2026-11-01T00%3A00%3A00%2B04%3A00");
        assert_eq!(url("кафе"), "%D0%BA%D0%B0%D1%84%D0%B5");
        assert_eq!(
            query(&[("from", "a b"), ("branch", ""), ("to", "c")]),
            "from=a%20b&to=c"
        );
    }

    #[test]
    fn the_chrome_escapes_the_tenant_and_title() {
        let html = page("<t>", "\"cafe\"", "Dashboard", "c\"s", "<p>body</p>");
        assert!(html.contains("&lt;t&gt;") && !html.contains("<t>"));
        assert!(html.contains("&quot;cafe&quot;"));
        assert!(html.contains("value=\"c&quot;s\""));
        assert!(html.contains("<p>body</p>"), "the body is the caller's HTML");
        assert!(html.contains("<a href=\"/admin/\" class=\"on\">Dashboard</a>"));
    }
}
