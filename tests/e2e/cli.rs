//! The command line: the generator's shape, configuration precedence and safe defaults.

use std::process::Command;

use crate::common::{data_dir, eddy_gen, free_port};

#[test]
fn gen_writes_tsbs_cpu_lines() {
    let out = eddy_gen(&[
        "--scale",
        "3",
        "--start",
        "2024-01-01T00:00:00Z",
        "--end",
        "2024-01-01T00:01:00Z",
        "--interval",
        "10s",
    ]);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 18);
    let first = lines[0];
    assert!(first.starts_with("cpu,hostname=host_0,region="), "{first}");
    for tag in [
        "datacenter=",
        "rack=",
        "os=",
        "arch=",
        "team=",
        "service=",
        "service_version=",
        "service_environment=",
    ] {
        assert!(first.contains(tag), "{tag} missing in {first}");
    }
    let fields = first.split(' ').nth(1).unwrap();
    assert_eq!(fields.split(',').count(), 10);
    assert!(fields.starts_with("usage_user=") && fields.ends_with('i'));
    assert!(first.ends_with(" 1704067200000000000"));
    // Deterministic for a seed, and tags are fixed per host.
    let again = eddy_gen(&[
        "--scale",
        "3",
        "--start",
        "2024-01-01T00:00:00Z",
        "--end",
        "2024-01-01T00:01:00Z",
    ]);
    assert_eq!(text.as_bytes(), &again[..]);
    assert_eq!(lines[0].split(' ').next(), lines[3].split(' ').next());
}

#[test]
fn refuses_to_listen_beyond_loopback_without_auth() {
    let dir = data_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--pg-addr", &format!("0.0.0.0:{}", free_port())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("requires authentication"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_override_environment_override_file() {
    let dir = data_dir();
    let cfg = dir.path().join("eddy.toml");
    let file_dir = dir.path().join("from-file");
    let env_dir = dir.path().join("from-env");
    let (http, pg) = (free_port(), free_port());
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\nhttp_addr = \"127.0.0.1:{http}\"\npg_addr = \"127.0.0.1:{pg}\"\n",
            file_dir.display()
        ),
    )
    .unwrap();
    // File only.
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .args(["--flight-addr", "127.0.0.1:0"])
        .spawn()
        .unwrap();
    wait_port(http);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    assert!(child.wait().unwrap().success());
    assert!(file_dir.join("catalog.json").exists() || file_dir.join("wal").exists());
    // Environment beats the file; a flag beats the environment.
    let http2 = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .args(["--flight-addr", "127.0.0.1:0"])
        .env("EDDY_DATA_DIR", &env_dir)
        .env("EDDY_HTTP_ADDR", "127.0.0.1:1")
        .args(["--http-addr", &format!("127.0.0.1:{http2}")])
        .spawn()
        .unwrap();
    wait_port(http2);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    assert!(child.wait().unwrap().success());
    assert!(env_dir.join("wal").exists());

    // A bad setting is a clear error.
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .args(["--wal-sync", "sometimes"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wal_sync"));
}

fn wait_port(port: u16) {
    for _ in 0..3000 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("port {port} never opened");
}
