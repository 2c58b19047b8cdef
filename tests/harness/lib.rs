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
        Gateway::start_with_env(args, &[], timeout).await
    }

    /// Like [`Gateway::start`], with extra environment variables.
    pub async fn start_with_env(
        args: &[&str],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> anyhow::Result<Gateway> {
        let mut child = Command::new(tongban_bin())
            .args(args)
            .envs(env.iter().copied())
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

    /// `/metrics` in the Prometheus text format, read with the scrape token `token`.
    pub async fn scrape_metrics(&self, token: &str) -> anyhow::Result<String> {
        Ok(reqwest::Client::new().get(self.url("/metrics")).bearer_auth(token).send().await?.text().await?)
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

    /// Sends the process a signal by name (`HUP`, `TERM`, `KILL`).
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let pid = self.child.id().context("the process has exited")?;
        let status = std::process::Command::new("kill").args(["-s", name, &pid.to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill -s {name} {pid} failed");
        Ok(())
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        Ok(tokio::time::timeout(timeout, self.child.wait()).await.context("the process did not exit")??)
    }
}

/// Every exchange record in the log directory `dir` (segment files `NNNNNNNNNNNN.wal` of JSON
/// lines), in order, seals left out.
pub fn exchange_records(dir: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    let mut records = Vec::new();
    for segment in segments {
        let text = std::fs::read_to_string(&segment)?;
        for line in text.lines() {
            let value: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("{}: {line}", segment.display()))?;
            // Seals end segments and signed heads end groups; neither is a record.
            if value.get("seal").is_none() && value.get("head").is_none() {
                records.push(value);
            }
        }
    }
    Ok(records)
}

/// A demo gateway with its generated sign-in details.
#[derive(Debug)]
pub struct Demo {
    pub gateway: Gateway,
    pub credentials: serde_json::Value,
    args: Vec<String>,
    env: Vec<(String, String)>,
    _data: tempfile::TempDir,
}

impl Demo {
    /// Starts `tongban demo` on a fresh data directory with a small dataset.
    pub async fn start() -> anyhow::Result<Demo> {
        Demo::start_with(2000, &[]).await
    }

    /// Starts `tongban demo` with `rows` people and extra `TONGBAN_…` environment settings.
    pub async fn start_with(rows: u64, env: &[(&str, &str)]) -> anyhow::Result<Demo> {
        let demo = Demo::launch(rows, env, &[]).await?;
        demo.gateway.wait_ready(Duration::from_secs(60)).await?;
        Ok(demo)
    }

    /// Starts `tongban demo --tls`: HTTPS with development certificates in `certs/` of the
    /// data directory, and a client certificate registered for every demo system.
    pub async fn start_tls(rows: u64) -> anyhow::Result<Demo> {
        Demo::launch(rows, &[], &["--tls"]).await
    }

    /// Starts `tongban demo --tls` with extra `TONGBAN_…` settings and waits until it answers
    /// over TLS.
    pub async fn start_tls_with(rows: u64, env: &[(&str, &str)]) -> anyhow::Result<Demo> {
        let demo = Demo::launch(rows, env, &["--tls"]).await?;
        let client = demo.tls_client(None)?;
        let started = Instant::now();
        loop {
            let ready =
                client.get(demo.gateway.url("/readyz")).send().await.is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(demo);
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("not ready over TLS after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An HTTPS client trusting only the demo's development CA, presenting the client
    /// certificate of the demo system named `system` when given.
    pub fn tls_client(&self, system: Option<&str>) -> anyhow::Result<reqwest::Client> {
        let identity = match system {
            Some(system) => {
                let (cert, key) = self.client_certificate(system)?;
                let mut pem = std::fs::read(cert)?;
                pem.extend(std::fs::read(key)?);
                Some(pem)
            }
            None => None,
        };
        self.tls_client_with_identity(identity)
    }

    /// An HTTPS client trusting only the demo's development CA, presenting `identity` (a PEM
    /// certificate and key) when given.
    pub fn tls_client_with_identity(&self, identity: Option<Vec<u8>>) -> anyhow::Result<reqwest::Client> {
        let ca = std::fs::read(self.data_dir().join("certs/ca.pem"))?;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca)?);
        if let Some(pem) = identity {
            builder = builder.identity(reqwest::Identity::from_pem(&pem)?);
        }
        Ok(builder.build()?)
    }

    /// The PEM files (certificate, key) of the client certificate `tongban demo --tls` made
    /// for the demo system named `system`.
    pub fn client_certificate(&self, system: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
        let listed = self.data_dir().join("certs/clients.json");
        let clients: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(listed)?)?;
        let files = clients
            .iter()
            .find(|c| c["name"] == system)
            .with_context(|| format!("certificate of {system}"))?;
        Ok((
            PathBuf::from(files["cert"].as_str().context("cert")?),
            PathBuf::from(files["key"].as_str().context("key")?),
        ))
    }

    /// The identity number of an account in the demo supplier's housing fund file.
    pub fn housing_fund_account(&self) -> anyhow::Result<String> {
        use arrow::array::AsArray;
        let file = std::fs::File::open(self.data_dir().join("datasets/housing_fund.parquet"))?;
        let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
            .build()?
            .next()
            .context("a batch")??;
        let ids = arrow::compute::cast(
            batch.column_by_name("id_number").context("id_number")?,
            &arrow::datatypes::DataType::Utf8,
        )?;
        Ok(ids.as_string::<i32>().value(0).to_owned())
    }

    async fn launch(rows: u64, env: &[(&str, &str)], extra: &[&str]) -> anyhow::Result<Demo> {
        Demo::launch_in(tempfile::tempdir()?, "127.0.0.1:0", rows, env, extra).await
    }

    /// Starts `tongban demo` on `listen` in the data directory `data`, which may already hold
    /// the configuration it is to serve (`tongban.toml`), and waits until it is ready.
    pub async fn start_in(data: tempfile::TempDir, listen: &str, rows: u64) -> anyhow::Result<Demo> {
        let demo = Demo::launch_in(data, listen, rows, &[], &[]).await?;
        demo.gateway.wait_ready(Duration::from_secs(60)).await?;
        Ok(demo)
    }

    async fn launch_in(
        data: tempfile::TempDir,
        listen: &str,
        rows: u64,
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> anyhow::Result<Demo> {
        let data_dir = data.path().to_str().context("utf-8 path")?.to_owned();
        let rows = rows.to_string();
        let mut args = vec!["demo", "--listen", listen, "--data-dir", &data_dir, "--rows", &rows];
        args.extend_from_slice(extra);
        let gateway = Gateway::start_with_env(&args, env, Duration::from_secs(180)).await?;
        let credentials = serde_json::from_slice(&std::fs::read(data.path().join("demo-credentials.json"))?)?;
        Ok(Demo {
            gateway,
            credentials,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            _data: data,
        })
    }

    /// Starts the demo again on the same data directory (after the old process stopped or
    /// was killed) and waits until it is ready; it listens on a new port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.gateway = Gateway::start_with_env(&args, &env, Duration::from_secs(180)).await?;
        self.gateway.wait_ready(Duration::from_secs(60)).await?;
        Ok(())
    }

    /// The demo's data directory: generated datasets, configuration, store and exchange log.
    /// A person of the demo's household file whose division starts with `division_prefix`,
    /// with a name: (identity number, name), read from the generated Parquet file.
    pub fn household_person(&self, division_prefix: &str) -> anyhow::Result<(String, String)> {
        use arrow::array::{Array, AsArray};
        let file = std::fs::File::open(self.data_dir().join("datasets/household.parquet"))?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
        for batch in reader {
            let batch = batch?;
            let column = |name: &str| {
                batch
                    .column_by_name(name)
                    .and_then(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).ok())
                    .with_context(|| format!("column {name}"))
            };
            let (ids, names, divisions) = (column("id_number")?, column("name")?, column("division_code")?);
            let (ids, names, divisions) =
                (ids.as_string::<i32>(), names.as_string::<i32>(), divisions.as_string::<i32>());
            for row in 0..batch.num_rows() {
                if !names.is_null(row)
                    && !divisions.is_null(row)
                    && divisions.value(row).starts_with(division_prefix)
                {
                    return Ok((ids.value(row).to_owned(), names.value(row).to_owned()));
                }
            }
        }
        anyhow::bail!("no person of division {division_prefix} in the household file")
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self._data.path()
    }

    /// Every exchange record the demo has written so far.
    pub fn exchange_records(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        exchange_records(&self.data_dir().join("exchange"))
    }

    pub fn password(&self) -> String {
        self.credentials["password"].as_str().unwrap_or_default().to_owned()
    }

    /// An API client signed in as `username`.
    pub async fn sign_in(&self, username: &str) -> anyhow::Result<Api> {
        Api::sign_in_with(self.anonymous(), username, &self.password()).await
    }

    /// An API client for the demo system named `name`, with its API key (over TLS, trusting
    /// the demo's CA, when the demo serves HTTPS).
    pub fn system(&self, name: &str) -> anyhow::Result<(String, Api)> {
        let systems = self.credentials["systems"].as_array().context("systems")?;
        let system = systems.iter().find(|s| s["name"] == name).with_context(|| format!("system {name}"))?;
        let id = system["id"].as_str().context("id")?.to_owned();
        let key = system["api_key"].as_str().context("key")?.to_owned();
        Ok((id, Api::with_client(&self.gateway.base_url, Some(key), self.client()?)))
    }

    /// An API client without credentials.
    pub fn anonymous(&self) -> Api {
        Api::with_client(&self.gateway.base_url, None, self.client().unwrap_or_default())
    }

    /// A client for the demo's listener: plain, or trusting its CA when it serves HTTPS.
    fn client(&self) -> anyhow::Result<reqwest::Client> {
        if self.gateway.base_url.starts_with("https://") {
            self.tls_client(None)
        } else {
            Ok(reqwest::Client::new())
        }
    }

    /// The credit code of the department of the demo user `username`.
    pub fn department_of(&self, username: &str) -> String {
        self.credentials["users"]
            .as_array()
            .and_then(|users| users.iter().find(|u| u["username"] == username))
            .and_then(|u| u["department"].as_str())
            .unwrap_or_default()
            .to_owned()
    }
}

/// A JSON client for `/api/v1`, answering each call with its status and body.
#[derive(Debug, Clone)]
pub struct Api {
    base_url: String,
    token: Option<String>,
    headers: Vec<(String, String)>,
    client: reqwest::Client,
}

/// A raw answer: status, content type, headers and body bytes.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl RawAnswer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

impl Api {
    pub fn new(base_url: &str, token: Option<String>) -> Api {
        Api { base_url: base_url.to_owned(), token, headers: Vec::new(), client: reqwest::Client::new() }
    }

    /// A client over a given `reqwest::Client` (for TLS roots and client certificates).
    /// The bearer token the client sends: a session's or a system's API key.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn with_client(base_url: &str, token: Option<String>, client: reqwest::Client) -> Api {
        Api { base_url: base_url.to_owned(), token, headers: Vec::new(), client }
    }

    /// The same client sending `headers` with every call (such as a data call's purpose).
    pub fn with_headers(&self, headers: &[(&str, &str)]) -> Api {
        let mut api = self.clone();
        api.headers = headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        api
    }

    /// Sends `body` (JSON when given) with an `Accept` header and returns the raw answer.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        accept: Option<&str>,
    ) -> anyhow::Result<RawAnswer> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        Ok(RawAnswer { status, content_type, headers, body })
    }

    pub async fn sign_in(base_url: &str, username: &str, password: &str) -> anyhow::Result<Api> {
        let anonymous = Api::new(base_url, None);
        let (status, body) = anonymous
            .post("/sessions", &serde_json::json!({"username": username, "password": password}))
            .await?;
        anyhow::ensure!(status == 201, "sign-in of {username} answered {status}: {body}");
        let token = body["token"].as_str().context("token")?.to_owned();
        Ok(Api::new(base_url, Some(token)))
    }

    /// Signs in as `username` over `api`'s client (for TLS roots), returning a client with the
    /// session token.
    pub async fn sign_in_with(api: Api, username: &str, password: &str) -> anyhow::Result<Api> {
        let (status, body) =
            api.post("/sessions", &serde_json::json!({"username": username, "password": password})).await?;
        anyhow::ensure!(status == 201, "sign-in of {username} answered {status}: {body}");
        let token = body["token"].as_str().context("token")?.to_owned();
        Ok(Api { token: Some(token), ..api })
    }

    /// A GET outside `/api/v1` (such as `/metrics`) with this client's credentials; the
    /// body is JSON when it parses as JSON, else a string.
    pub async fn get_root(&self, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut request = self.client.get(format!("{}{path}", self.base_url));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.client.request(method, format!("{}/api/v1{path}", self.base_url));
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn answer(request: reqwest::RequestBuilder) -> anyhow::Result<(u16, serde_json::Value)> {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let is_problem = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes() == b"application/problem+json");
        let text = response.text().await?;
        let body = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{status} with a body that is not JSON: {text}"))?
        };
        // Every error is a problem document.
        anyhow::ensure!(status < 400 || is_problem, "{status} without problem+json: {text}");
        Ok((status, body))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        Api::answer(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        Api::answer(self.request(reqwest::Method::POST, path).json(body)).await
    }

    pub async fn put(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        Api::answer(self.request(reqwest::Method::PUT, path).json(body)).await
    }

    /// Sends a raw body with the given content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        Api::answer(self.request(reqwest::Method::POST, path).header("content-type", content_type).body(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        Api::answer(self.request(reqwest::Method::DELETE, path)).await
    }
}

/// A validity end far enough ahead for any run of the tests.
pub const VALID_UNTIL: &str = "2099-12-31";

/// Terms a demand asks for (or an approval grants), valid until [`VALID_UNTIL`].
pub fn terms(items: &[&str], prefix: &str, rate: u32, quota: u32) -> serde_json::Value {
    serde_json::json!({
        "items": items,
        "division_prefix": prefix,
        "rate_per_second": rate,
        "daily_quota": quota,
        "valid_until": VALID_UNTIL,
    })
}

/// Takes `action` (with its payload) on demand `id` as `api`, at the version `reader` reads.
pub async fn act(api: &Api, reader: &Api, id: &str, action: serde_json::Value) -> (u16, serde_json::Value) {
    let (_, current) = reader.get(&format!("/demands/{id}")).await.expect("read demand");
    let mut body = action;
    body["version"] = current["version"].clone();
    api.post(&format!("/demands/{id}/actions"), &body).await.expect("act")
}

/// A fresh database named after `purpose` on the PostgreSQL server the test script started, as
/// a store URL; `None` when no server is configured (and the script does not require one).
pub async fn postgres_store(purpose: &str) -> anyhow::Result<Option<String>> {
    let Ok(admin) = std::env::var("TONGBAN_TEST_PG_URL") else {
        anyhow::ensure!(
            std::env::var_os("TONGBAN_REQUIRE_PG").is_none(),
            "TONGBAN_REQUIRE_PG without a server"
        );
        return Ok(None);
    };
    let name = format!("{purpose}_{}", std::process::id());
    let pool = sqlx::PgPool::connect(&admin).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&pool).await?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await?;
    let (base, _) = admin.rsplit_once('/').ok_or_else(|| anyhow::anyhow!("a database in {admin}"))?;
    Ok(Some(format!("{base}/{name}")))
}
