//! The web console in a real browser: starts the demo gateway and runs the browser tests in
//! `tests/console/` (headless Debian Chromium driven by playwright-core under Node.js)
//! against it. Screenshots are kept in `tests/console/screenshots/console/` (or
//! under `$TONGBAN_SCREENSHOTS`) as the run's artifacts. Other end-to-end modules run browser
//! tests of their own pages through [`run_browser_tests`].

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tongban_e2e::Demo;

fn console_tests() -> PathBuf {
    // Where the test runs, not where it was compiled: the target directory may be shared
    // between checkouts.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("console")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into())
}

/// What the browser tests need, or why they cannot run here.
fn missing_prerequisite() -> Option<String> {
    if !console_tests().join("node_modules/playwright-core").is_dir() {
        return Some("playwright-core is not installed in tests/console (tests/run.sh runs `npm ci`)".into());
    }
    if !chromium().exists() {
        return Some(format!(
            "no browser at {} (tests/run.sh installs Debian's chromium)",
            chromium().display()
        ));
    }
    if std::process::Command::new("node").arg("--version").output().is_err() {
        return Some("node is not installed".into());
    }
    None
}

/// Runs the browser tests in `file` (in `tests/console/`) against `demo`, with `env` added,
/// keeping screenshots in `screenshots`; `false` when the browser or playwright is missing
/// and the run does not require them (`tests/run.sh` does).
pub(crate) async fn run_browser_tests(
    file: &str,
    demo: &Demo,
    screenshots: &std::path::Path,
    env: &[(&str, &str)],
) -> bool {
    if let Some(reason) = missing_prerequisite() {
        assert!(std::env::var_os("TONGBAN_REQUIRE_BROWSER").is_none(), "{reason}");
        eprintln!("skipping the browser tests in {file}: {reason}");
        return false;
    }
    let mut command = tokio::process::Command::new("node");
    command
        .args(["--test", "--test-reporter=spec", file])
        .current_dir(console_tests())
        .env("TONGBAN_URL", demo.gateway.url(""))
        .env("TONGBAN_CREDENTIALS", demo.data_dir().join("demo-credentials.json"))
        .env("TONGBAN_SCREENSHOTS", screenshots)
        .env("CHROMIUM", chromium())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("the browser tests finish within five minutes")
        .expect("node runs");
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the browser tests in {file} failed; screenshots are in {}",
        screenshots.display()
    );
    true
}

/// Where screenshots of a browser run named `name` are kept: `$TONGBAN_SCREENSHOTS/name` or
/// `tests/console/screenshots/name`, emptied first.
pub(crate) fn screenshots(name: &str) -> PathBuf {
    let dir = std::env::var_os("TONGBAN_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| console_tests().join("screenshots"))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test]
async fn console_in_headless_chromium() {
    let demo = Demo::start().await.expect("demo starts");
    let screenshots = screenshots("console");
    // A person the Guangdong police's household grant covers, for the objection the browser
    // test files against a real answer.
    let (person, _) = demo.household_person("4115").expect("a person of Xinyang");
    if !run_browser_tests("console.test.mjs", &demo, &screenshots, &[("TONGBAN_PERSON", &person)]).await {
        return;
    }
    let shots = std::fs::read_dir(&screenshots).expect("screenshots").count();
    assert!(shots >= 8, "only {shots} screenshots were kept");
    eprintln!("screenshots: {}", screenshots.display());
}

/// The licence page in headless Chromium: verification at a counter from the holder's copy,
/// the issuer's look-up and revocation, and seal certificates registered and retired.
#[tokio::test]
async fn licences_in_headless_chromium() {
    let demo = Demo::start().await.expect("demo starts");
    let screenshots = screenshots("licences");
    let today = chrono::Local::now().date_naive();
    let (licence, _) = crate::licences::register_documents(&demo)
        .expect("the register")
        .into_iter()
        .find(|(d, s)| {
            s == "issued" && d.valid_until.is_some_and(|last| last >= today + chrono::Days::new(2))
        })
        .expect("a standing certificate");
    let key = tongban_evidence::SigningKey::generate(tongban_evidence::Algorithm::Sm2Sm3).expect("key");
    let certificate = tongban_evidence::Certificate::self_signed(
        &key,
        "CN=安徽省住建厅电子印章系统,O=Anhui",
        Duration::from_secs(365 * 86_400),
    )
    .expect("certificate");
    let pem = certificate.to_pem().expect("pem");
    let env = [("TONGBAN_LICENCE", licence.number.as_str()), ("TONGBAN_SEAL_PEM", pem.as_str())];
    if !run_browser_tests("licences.test.mjs", &demo, &screenshots, &env).await {
        return;
    }
    let shots = std::fs::read_dir(&screenshots).expect("screenshots").count();
    assert!(shots >= 4, "only {shots} screenshots were kept");
}
