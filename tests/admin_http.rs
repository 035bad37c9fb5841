//! The back office over plain HTTP: no page without a session, a signed
//! cookie that cannot be forged or carried to another tenant, form tokens,
//! every stored string escaped, and exports through the session.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use common::{produce, producer, wait_until, Env};

const TOKEN: &str = "cafe-back-office-token-5b1f0e";

/// One request with the session's cookie (if any) and a form body:
/// status, headers (lower-case names), body.
fn request(port: u16, method: &str, path: &str, cookie: &str, form: &str) -> (u16, BTreeMap<String, String>, String) {
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if !cookie.is_empty() {
        headers.push(("Cookie", cookie));
    }
    common::http_exchange(port, method, path, &headers, form.as_bytes())
}

/// Signs in with `token`; the `Cookie` header value of the session.
fn sign_in(port: u16, token: &str) -> String {
    let (status, headers, _) = request(port, "POST", "/admin/login", "", &format!("token={token}"));
    assert_eq!(status, 303, "{headers:?}");
    assert_eq!(headers.get("location").map(String::as_str), Some("/admin/"));
    let set = headers.get("set-cookie").cloned().unwrap_or_default();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(set.contains(attribute), "{set}");
    }
    set.split(';').next().unwrap().to_owned()
}

#[test]
fn the_back_office_needs_a_session_and_a_form_token_and_escapes_what_it_shows() {
    let env = Env::new("adminhttp", 2);
    let tenants = env.dir.path().join("tenants");
    let cafe = std::fs::read_to_string(tenants.join("cafe-central.toml")).unwrap();
    common::write(
        &tenants.join("cafe-central.toml"),
        &format!("api_tokens_sha256 = [\"{}\"]\n{cafe}", accrue::api::hash_token(TOKEN)),
    );
    let studio = std::fs::read_to_string(tenants.join("studio-flow.toml")).unwrap();
    common::write(
        &tenants.join("studio-flow.toml"),
        &format!(
            "api_tokens_sha256 = [\"{}\"]\n{studio}",
            accrue::api::hash_token("studio-token-42")
        ),
    );
    let hostile = "<img src=x onerror=alert(1)>\"'";
    let adjust = json!({
        "schema_version": 1, "event_id": "h-1", "type": "balance.adjust",
        "tenant": "cafe-central", "branch": "downtown", "customer": "c-1",
        "occurred_at": "2026-11-20T09:00:00Z",
        "body": {"account": "cashback", "amount": "5.00", "description": hostile, "operator": "</td><script>x</script>"}
    });
    produce(
        &producer(),
        &env.input,
        &[(Some("cafe-central:c-1".into()), adjust.to_string().into_bytes())],
    );
    let mut run = env.spawn();
    let port = env.http_port;
    assert!(
        wait_until(Duration::from_secs(60), || common::high_watermark_sum(
            &env,
            &env.accruals
        ) >= 1),
        "the adjustment was not applied; logs:\n{}",
        env.logs()
    );

    // Without a session every page sends the browser to the sign-in form.
    for path in [
        "/admin/",
        "/admin/customers/c-1",
        "/admin/export/ledger.csv",
        "/admin/programs",
    ] {
        let (status, headers, _) = request(port, "GET", path, "", "");
        assert_eq!(
            (status, headers.get("location").map(String::as_str)),
            (303, Some("/admin/login")),
            "{path}"
        );
    }
    let (status, _, body) = request(port, "POST", "/admin/login", "", "token=not-a-token");
    assert_eq!(status, 401, "{body}");
    let cookie = sign_in(port, TOKEN);

    let (status, headers, body) = request(port, "GET", "/admin/customers/c-1", &cookie, "");
    assert_eq!(status, 200, "{body}");
    assert!(headers["content-security-policy"].contains("default-src 'none'"));
    assert_eq!(headers["cache-control"], "no-store");
    assert!(body.contains("&lt;img src=x onerror=alert(1)&gt;&quot;&#39;"), "{body}");
    assert!(body.contains("&lt;/td&gt;&lt;script&gt;x&lt;/script&gt;"), "{body}");
    assert!(
        !body.contains("<img") && !body.contains("<script"),
        "nothing stored reaches the page raw"
    );
    let (status, _, body) = request(port, "GET", "/admin/customers/%3Cb%3Eid%22", &cookie, "");
    assert_eq!(status, 200);
    assert!(body.contains("&lt;b&gt;id&quot;") && !body.contains("<b>id"), "{body}");

    // The adjustment form needs the session's token.
    let csrf = {
        let (_, _, page) = request(port, "GET", "/admin/customers/c-1", &cookie, "");
        let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
        page[at..at + 32].to_owned()
    };
    let form = "account=cashback&amount=1.00&description=x&operator=y&branch=downtown";
    for token in ["", "&csrf=00112233445566778899aabbccddeeff"] {
        let (status, _, body) = request(
            port,
            "POST",
            "/admin/customers/c-1/adjust",
            &cookie,
            &format!("{form}{token}"),
        );
        assert_eq!(status, 403, "{body}");
    }
    let (status, _, body) = request(
        port,
        "POST",
        "/admin/customers/c-1/adjust",
        &cookie,
        &format!("account=nope&amount=1&description=x&branch=downtown&csrf={csrf}"),
    );
    assert_eq!(
        status, 400,
        "an unknown account is refused before anything is sent: {body}"
    );
    assert!(body.contains("not an account of this tenant"), "{body}");

    // Exports through the session, with the page's filters.
    let (status, headers, body) = request(port, "GET", "/admin/export/ledger.csv?customer=c-1", &cookie, "");
    assert_eq!(status, 200, "{body}");
    assert!(headers["content-type"].starts_with("text/csv"));
    assert!(
        body.starts_with("id,occurred_at,tenant,customer") && body.contains(",h-1,"),
        "{body}"
    );

    for path in [
        "/admin/export/ledger.xlsx?customer=c-1",
        "/admin/export/totals.xlsx?from=2026-11-01&to=2026-12-01&group_by=entry_type,day",
    ] {
        let (status, headers, body) = request(port, "GET", path, &cookie, "");
        assert_eq!(status, 200, "{path}: {body}");
        assert!(headers["content-type"].contains("spreadsheetml"), "{path}: {headers:?}");
        assert!(body.starts_with("PK"), "{path}: an xlsx is a zip");
    }
    let (status, _, body) = request(
        port,
        "GET",
        "/admin/export/totals.csv?from=2026-11-01&to=2026-12-01&group_by=entry_type",
        &cookie,
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("manual_adjustment") && body.contains("5.00"), "{body}");

    // A tampered cookie is no session; another tenant's session sees nothing of this one.
    let tampered = cookie.replacen("cafe-central", "studio-flow", 1);
    let (status, _, _) = request(port, "GET", "/admin/", &tampered, "");
    assert_eq!(status, 303);
    let studio = sign_in(port, "studio-token-42");
    let (status, _, body) = request(port, "GET", "/admin/customers/c-1", &studio, "");
    assert_eq!(status, 200);
    assert!(body.contains("id=\"no-balances\"") && !body.contains("h-1"), "{body}");
    let (status, _, body) = request(port, "GET", "/admin/export/ledger.csv", &studio, "");
    assert_eq!(status, 200);
    assert!(!body.contains("cafe-central"), "{body}");

    // Signing out needs the form token too, then the cookie is cleared.
    let (status, headers, _) = request(port, "POST", "/admin/logout", &cookie, &format!("csrf={csrf}"));
    assert_eq!(status, 303);
    assert!(headers["set-cookie"].contains("Max-Age=0"));
    common::terminate(&mut run, Duration::from_secs(30));
}
