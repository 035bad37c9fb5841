//! Headless Chromium for browser tests: Debian's `chromium` driven through
//! its `chromedriver` (scripts/test installs both), and the few WebDriver
//! steps the tests repeat.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free port in a process group of its own; dropping it
/// kills the group, so the Chromium it started goes too, even when a test
/// panicked before closing its session.
pub struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver; fails, saying what to install, without Chromium.
pub fn start_driver() -> Driver {
    for bin in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: this test needs Debian's chromium and chromium-driver; \
             run scripts/test (it installs them) or `apt-get install -y chromium chromium-driver`"
        );
    }
    let port = super::common::free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    super::common::wait_for_port(&format!("127.0.0.1:{port}"), Duration::from_secs(30));
    Driver { child, port }
}

/// A headless Chromium session, 1280x1420.
pub async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1420", "--hide-scrollbars"]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a headless Chromium session through chromedriver")
}

/// Clicks the element `css` names.
pub async fn click(client: &Client, css: &str) {
    client.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
}

/// Types `text` into the field `css` names.
pub async fn type_into(client: &Client, css: &str, text: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

/// Picks the option `value` of the select `css` names.
pub async fn select(client: &Client, css: &str, value: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .select_by_value(value)
        .await
        .unwrap();
}

/// The visible text of the first element matching `css`.
pub async fn text_of(client: &Client, css: &str) -> String {
    client.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
}

/// The `href` of the link with id `id`.
pub async fn href(client: &Client, id: &str) -> String {
    let link = client.find(Locator::Id(id)).await.unwrap();
    link.attr("href").await.unwrap().unwrap_or_default()
}

/// Waits until the browser's address satisfies `done` (a click returns
/// before the browser has navigated).
pub async fn wait_for_url(client: &Client, done: impl Fn(&str) -> bool) {
    for _ in 0..150 {
        if client.current_url().await.is_ok_and(|u| done(u.as_str())) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the browser did not get there: {:?}", client.current_url().await);
}
