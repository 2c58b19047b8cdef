//! Helpers for end-to-end tests: start the real `tongban` binary on an ephemeral loopback
//! port and talk to it over HTTP.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `tongban` binary: `$TONGBAN_BIN`, or the one built next to this test in the target
/// directory (tests/run.sh builds it first).
pub fn tongban_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("TONGBAN_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/tongban
    let profile_dir = exe.parent().and_then(Path::parent).expect("target directory layout");
    let bin = profile_dir.join(format!("tongban{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.is_file(), "{} is missing: run tests/run.sh, or cargo build --bins first", bin.display());
    bin
}

/// A running gateway process, killed when dropped.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    pub base_url: String,
}

impl Gateway {
    /// Starts `tongban` with `args` (which must make it listen on `127.0.0.1:0`) and waits
    /// for it to announce its address.
    pub async fn start(args: &[&str], timeout: Duration) -> anyhow::Result<Gateway> {
        let mut child = Command::new(tongban_bin())
            .args(args)
            .env("TONGBAN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawn tongban")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let base_url = tokio::time::timeout(timeout, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("tongban listening on ") {
                    return Ok(url.trim().to_owned());
                }
            }
            bail!("tongban exited before listening")
        })
        .await
        .context("tongban did not start in time")??;
        // Keep draining standard output so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Gateway { child, base_url })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Polls `/readyz` until it answers 200, returning its body.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<serde_json::Value> {
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            let response = client.get(self.url("/readyz")).send().await?;
            if response.status().is_success() {
                return Ok(response.json().await?);
            }
            if started.elapsed() > timeout {
                bail!("not ready after {timeout:?}: {}", response.text().await?);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the process.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
