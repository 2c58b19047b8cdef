//! `tongban demo` and `tongban serve` as a user runs them.

use std::time::Duration;

use tongban_e2e::Gateway;

#[tokio::test]
async fn demo_generates_data_once_and_serves_it() {
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_str().expect("utf-8 path");
    let args = ["demo", "--listen", "127.0.0.1:0", "--data-dir", data_dir, "--rows", "3000"];

    let gateway = Gateway::start(&args, Duration::from_secs(180)).await.expect("demo starts");
    let ready = gateway.wait_ready(Duration::from_secs(60)).await.expect("ready");
    assert_eq!(ready["status"], "ready");
    let datasets = ready["datasets"].as_array().expect("datasets");
    let names: Vec<&str> = datasets.iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "household",
            "housing_fund",
            "licence_business_licence",
            "licence_household_register",
            "licence_housing_fund_certificate",
            "licence_marriage_certificate",
            "licence_social_insurance_certificate",
            "social_insurance"
        ]
    );
    assert_eq!(datasets[0]["rows"], 3000);

    let health: serde_json::Value =
        reqwest::get(gateway.url("/healthz")).await.expect("healthz").json().await.expect("json");
    assert_eq!(health["status"], "ok");
    let response = reqwest::get(gateway.url("/no/such/route")).await.expect("request");
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    gateway.stop().await.expect("stop");

    for file in [
        "household.parquet",
        "social_insurance.parquet",
        "housing_fund.parquet",
        "defects.csv",
        "manifest.json",
    ] {
        assert!(data.path().join("datasets").join(file).is_file(), "{file}");
    }
    assert!(data.path().join("tongban.toml").is_file());

    // A second run reuses the data instead of generating it again.
    let manifest = data.path().join("datasets/manifest.json");
    let before = std::fs::metadata(&manifest).expect("manifest").modified().expect("mtime");
    let gateway = Gateway::start(&args, Duration::from_secs(60)).await.expect("demo restarts");
    gateway.wait_ready(Duration::from_secs(30)).await.expect("ready again");
    let after = std::fs::metadata(&manifest).expect("manifest").modified().expect("mtime");
    assert_eq!(before, after, "the datasets were not regenerated");
    gateway.stop().await.expect("stop");
}

#[tokio::test]
async fn serve_reports_unloadable_datasets_as_not_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tongban.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nplaintext = true\n\n[[datasets]]\nname = \"household\"\nkey = \"id_number\"\n\
         [datasets.source]\nkind = \"parquet\"\nlocation = \"missing/household.parquet\"\n",
    )
    .expect("write config");
    let gateway =
        Gateway::start(&["serve", "--config", config.to_str().expect("utf-8")], Duration::from_secs(30))
            .await
            .expect("serve starts");
    let client = reqwest::Client::new();
    let mut last = None;
    for _ in 0..100 {
        let response = client.get(gateway.url("/readyz")).send().await.expect("readyz");
        assert_eq!(response.status(), 503);
        let body: serde_json::Value = response.json().await.expect("problem json");
        if body["detail"].as_str().unwrap_or_default().contains("failed") {
            last = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = last.expect("readiness reports the failure");
    assert_eq!(body["code"], "not_ready");
    assert!(body["detail"].as_str().unwrap_or_default().contains("missing/household.parquet"), "{body}");
    gateway.stop().await.expect("stop");
}

#[tokio::test]
async fn a_configuration_with_a_typo_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tongban.toml");
    std::fs::write(&config, "[server]\nlisten = \"127.0.0.1:0\"\nlisten_adress = \"x\"\n").expect("write");
    let output = tokio::process::Command::new(tongban_e2e::tongban_bin())
        .args(["serve", "--config", config.to_str().expect("utf-8")])
        .output()
        .await
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("listen_adress"), "{stderr}");
}

/// A new deployment: `tongban bootstrap` makes the first platform administrator on an empty
/// store, who signs in to the served gateway and registers a department; a second bootstrap
/// is refused.
#[tokio::test]
async fn bootstrap_makes_the_first_administrator_of_a_new_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tongban.toml");
    std::fs::write(&config, "[server]\nlisten = \"127.0.0.1:0\"\nplaintext = true\n").expect("write config");
    let config = config.to_str().expect("utf-8");
    let office = tongban_policy::credit_code::CreditCode::compose('1', '1', "410000", "00410003");
    let bootstrap = |username: &'static str| {
        let office = office.clone();
        async move {
            tokio::process::Command::new(tongban_e2e::tongban_bin())
                .args(["bootstrap", "--config", config, "--department-code", &office])
                .args(["--department-name", "河南省数据局", "--region", "410000", "--username", username])
                .env("TONGBAN_LOG", "warn")
                .output()
                .await
                .expect("run bootstrap")
        }
    };
    let first = bootstrap("admin").await;
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{stdout}{}", String::from_utf8_lossy(&first.stderr));
    let password = stdout
        .lines()
        .find_map(|l| l.rsplit_once("): ").filter(|(head, _)| head.starts_with("password")).map(|(_, p)| p))
        .expect("the password is printed")
        .trim()
        .to_owned();

    let gateway =
        Gateway::start(&["serve", "--config", config], Duration::from_secs(30)).await.expect("serve");
    let admin = tongban_e2e::Api::sign_in(&gateway.base_url, "admin", &password)
        .await
        .expect("the first administrator signs in");
    let department = serde_json::json!({
        "code": tongban_policy::credit_code::CreditCode::compose('1', '1', "440000", "00440001"),
        "name": "广东省人力资源和社会保障厅",
        "region": "440000",
        "roles": ["supplier", "demander"],
    });
    let (status, body) = admin.post("/departments", &department).await.expect("call");
    assert_eq!(status, 201, "{body}");

    // The printed password is changed for one of the administrator's own; the current one
    // must be right, and every other session ends.
    let other =
        tongban_e2e::Api::sign_in(&gateway.base_url, "admin", &password).await.expect("second session");
    let change =
        |current: &str, new: &str| serde_json::json!({"current_password": current, "new_password": new});
    let (status, body) =
        admin.put("/me/password", &change("wrong", "a-new-long-passphrase")).await.expect("call");
    assert_eq!((status, body["code"].as_str()), (422, Some("wrong_password")), "{body}");
    let (status, body) = admin.put("/me/password", &change(&password, "short")).await.expect("call");
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_request")), "{body}");
    let (status, body) =
        admin.put("/me/password", &change(&password, "a-new-long-passphrase")).await.expect("call");
    assert_eq!(status, 204, "{body}");
    assert_eq!(admin.get("/me").await.expect("call").0, 200, "the changing session goes on");
    assert_eq!(other.get("/me").await.expect("call").0, 401, "the other session ended");
    assert!(tongban_e2e::Api::sign_in(&gateway.base_url, "admin", &password).await.is_err());
    tongban_e2e::Api::sign_in(&gateway.base_url, "admin", "a-new-long-passphrase")
        .await
        .expect("the new password signs in");
    gateway.stop().await.expect("stop");

    let second = bootstrap("admin2").await;
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already has an administrator (admin)"), "{stderr}");
}

/// `tongban config check` tells each problem once, on a line naming the file or variable, the
/// key and the value, without figment's profile; then the files a valid configuration names.
#[tokio::test]
async fn config_check_names_each_problem_once_with_its_key_and_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tongban.toml");
    let check = |env: Vec<(&'static str, &'static str)>| {
        let config = config.clone();
        async move {
            let output = tokio::process::Command::new(tongban_e2e::tongban_bin())
                .args(["config", "check"])
                .arg(&config)
                .envs(env)
                .env("TONGBAN_LOG", "error")
                .output()
                .await
                .expect("run");
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned()
                    + &String::from_utf8_lossy(&output.stderr),
            )
        }
    };
    // Reading stops at the first problem; each is told on one line, once.
    for (file, env, expected) in [
        (
            "[server]\nlisten = \"localhost-8080\"\n",
            vec![],
            "tongban.toml: server.listen = \"localhost-8080\": ",
        ),
        ("[server]\nshutdown_grace_sec = 5\n", vec![], "shutdown_grace_sec"),
        (
            "[server]\nplaintext = true\n",
            vec![("TONGBAN_STORE__SESSION_HOURS", "many")],
            "TONGBAN_STORE__SESSION_HOURS = \"many\": ",
        ),
    ] {
        std::fs::write(&config, file).expect("write");
        let (ok, said) = check(env).await;
        assert!(!ok, "{said}");
        let telling: Vec<&str> = said.lines().filter(|l| l.contains(expected)).collect();
        assert_eq!(telling.len(), 1, "once: {expected}\n{said}");
        assert!(!said.contains("default."), "figment's profile is not shown: {said}");
    }

    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nplaintext = true\n\n[[datasets]]\nname = \"household\"\nkey = \"id_number\"\n\
         [datasets.source]\nkind = \"parquet\"\nlocation = \"data/household.parquet\"\n",
    )
    .expect("write");
    let (ok, said) = check(vec![]).await;
    assert!(!ok, "{said}");
    assert!(
        said.contains("datasets[0].source.location (household) = \"data/household.parquet\": no such file"),
        "{said}"
    );
    std::fs::create_dir_all(dir.path().join("data")).expect("dir");
    std::fs::write(dir.path().join("data/household.parquet"), b"").expect("file");
    let (ok, said) = check(vec![]).await;
    assert!(ok, "{said}");
    assert!(said.contains("valid; 1 datasets"), "{said}");
    // SQL on a cluster needs the cluster's scheduler.
    let (ok, said) = check(vec![("TONGBAN_DATA__SQL__ENGINE", "ballista")]).await;
    assert!(!ok, "{said}");
    assert!(said.contains("needs data.sql.scheduler"), "{said}");
    let (ok, said) = check(vec![
        ("TONGBAN_DATA__SQL__ENGINE", "ballista"),
        ("TONGBAN_DATA__SQL__SCHEDULER", "10.0.0.5:50050"),
    ])
    .await;
    assert!(ok, "{said}");
}

/// A demo asked to listen on a taken address says so at once, naming it, before it generates
/// or seeds anything.
#[tokio::test]
async fn a_taken_address_is_told_before_the_demo_generates_anything() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let output = tokio::process::Command::new(tongban_e2e::tongban_bin())
        .args(["demo", "--listen", &address, "--rows", "1000", "--data-dir"])
        .arg(dir.path())
        .output()
        .await
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot listen on {address}")), "{stderr}");
    assert!(!dir.path().join("datasets").exists(), "nothing was generated");
}

/// Generating with standard error going to a file or a pipe shows progress lines, where a bar
/// would show nothing.
#[tokio::test]
async fn generation_reports_progress_in_lines_when_not_at_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = tokio::process::Command::new(tongban_e2e::tongban_bin())
        .args(["generate", "--rows", "20000", "--out"])
        .arg(dir.path().join("out"))
        .output()
        .await
        .expect("run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines =
        stderr.lines().filter(|l| l.starts_with("generated ") && l.contains("of 20000 people")).count();
    assert!(lines >= 5, "{stderr}");
}

/// Four consecutive free ports on `host`, the first returned.
fn four_free_ports(host: &str) -> u16 {
    for _ in 0..50 {
        let first =
            std::net::TcpListener::bind((host, 0)).expect("bind").local_addr().expect("address").port();
        if first > u16::MAX - 4 {
            continue;
        }
        if (1..4).all(|offset| std::net::TcpListener::bind((host, first + offset)).is_ok()) {
            return first;
        }
    }
    panic!("no four consecutive free ports on {host}")
}

/// `tongban demo --federation`: 河南 and 广东 peered on loopback, each in its own directory,
/// with a demand approved through both, so that a 广东 system's query at 广东 is answered from
/// 河南's data, as the README shows.
#[tokio::test]
async fn the_federation_demo_answers_a_guangdong_system_from_henan() {
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_str().expect("utf-8 path");
    let port = four_free_ports("127.0.0.5");
    let listen = format!("127.0.0.5:{port}");
    let args = ["demo", "--federation", "--listen", &listen, "--data-dir", data_dir, "--rows", "1000"];
    let gateway = Gateway::start(&args, Duration::from_secs(180)).await.expect("demo starts");
    // The first gateway up announces itself; the other may still be seeding.
    let credentials_file = data.path().join("guangdong/demo-credentials.json");
    let started = std::time::Instant::now();
    while !credentials_file.is_file() {
        assert!(started.elapsed() < Duration::from_secs(120), "广东 never seeded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let credentials: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&credentials_file).expect("credentials")).expect("json");
    let key = credentials["systems"]
        .as_array()
        .expect("systems")
        .iter()
        .find(|s| s["name"] == "广东省公安厅跨省户籍业务系统")
        .and_then(|s| s["api_key"].as_str())
        .expect("the police system's key")
        .to_owned();
    let guangdong = format!("http://127.0.0.5:{}/api/v1/data/sql", port + 1);
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let answer = loop {
        let response = client
            .post(&guangdong)
            .bearer_auth(&key)
            .header("x-tongban-service-item", "KSTB-GA-003")
            .header("x-tongban-case-number", "GD-2026-000731")
            .header("x-tongban-operator", "0031")
            .json(
                &serde_json::json!({"query": "SELECT status, count(*) AS n FROM household GROUP BY status"}),
            )
            .send()
            .await;
        // The credentials are written while 广东 seeds, a moment before it listens, so a
        // refused connection means "not yet" until the deadline.
        let response = match response {
            Ok(response) => response,
            Err(error) if error.is_connect() && started.elapsed() < Duration::from_secs(90) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(error) => panic!("request: {error}"),
        };
        if response.status() == 200 {
            break response.json::<serde_json::Value>().await.expect("json");
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "not answered: {}",
            response.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let counted: u64 = answer["rows"].as_array().expect("rows").iter().filter_map(|r| r["n"].as_u64()).sum();
    assert!(counted > 0, "{answer}");
    // 河南 answered, and recorded it as a call from 广东.
    let records = tongban_e2e::exchange_records(&data.path().join("henan/exchange")).expect("河南's log");
    assert!(
        records.iter().any(|r| r["operation"] == "sql" && r["peer"] == "guangdong" && r["status"] == 200)
    );
    for province in ["henan", "guangdong"] {
        for file in
            ["tongban.toml", "demo-credentials.json", "datasets/household.parquet", "federation/gateway.pem"]
        {
            assert!(data.path().join(province).join(file).is_file(), "{province}/{file}");
        }
    }
    gateway.stop().await.expect("stop");
}
