//! A full disk: the write that meets it is refused cleanly (HTTP 507, SQLSTATE 53100), reads
//! and `/health` keep working, and writes resume by themselves once space is freed, without a
//! restart and without losing or duplicating an acknowledged row.
//!
//! The data directory lives on a small tmpfs mounted for the test (CI runs as root); a balloon
//! file takes most of it so that the disk fills after a few hundred writes.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Server, data_dir};

/// Size of the tmpfs the data directory lives on.
const TMPFS_MIB: usize = 64;
/// Size of the balloon file: what is left is what Eddy fills.
const BALLOON_MIB: usize = 56;
/// Lines per HTTP write.
const BATCH_ROWS: usize = 1000;

/// A tmpfs mounted for the test, unmounted (lazily, so a process still holding a file does
/// not keep it) when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size_mib: usize) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(path)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "this test needs to mount a tmpfs (run it as root, as CI does): mount failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!(
                "this test needs to mount a tmpfs (run it as root, as CI does): cannot run mount: {e}"
            ),
        }
        Tmpfs {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills `path` with `mib` MiB of data (written, so tmpfs really allocates it).
fn balloon(path: &Path, mib: usize) {
    let mut f = std::fs::File::create(path).expect("balloon");
    let chunk = vec![0x5au8; 1 << 20];
    for _ in 0..mib {
        f.write_all(&chunk).expect("write the balloon");
    }
    f.sync_all().expect("sync the balloon");
}

/// Takes every byte still free on the file system of `path` (appending to it: space a failed
/// flush gave back since the last call is taken too).
fn fill_the_rest(path: &Path) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("filler");
    let page = vec![0xa5u8; 4096];
    loop {
        match f.write(&page) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Pseudo-random hex, so that the WAL and segments cannot compress the rows away.
struct Noise(u64);

impl Noise {
    fn hex(&mut self, chars: usize) -> String {
        let mut out = String::with_capacity(chars);
        while out.len() < chars {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            out.push_str(&format!("{:016x}", self.0));
        }
        out.truncate(chars);
        out
    }
}

/// `BATCH_ROWS` lines of `m`, rows `first..first + BATCH_ROWS`, each with its own key.
fn batch(first: usize, noise: &mut Noise) -> String {
    // 2024-01-01T00:00:00Z, one row per millisecond: one day holds them all.
    let base: i64 = 1_704_067_200_000_000_000;
    (first..first + BATCH_ROWS)
        .map(|i| {
            format!(
                "m,host=h{} v={i}i,s=\"{}\" {}\n",
                i % 10,
                noise.hex(64),
                base + i as i64 * 1_000_000
            )
        })
        .collect()
}

/// The SQLSTATE of a failed statement.
fn sqlstate(e: &tokio_postgres::Error, what: &str) -> String {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("{what}: not a server error: {e}"));
    db.code().code().to_string()
}

/// Attempts at a write on a full disk: a failed flush gives back the space of its partial
/// files, which a write may take before the disk is filled again.
const FULL_ATTEMPTS: usize = 10;

async fn count(s: &Server) -> i64 {
    s.pg()
        .await
        .query_one("SELECT count(*) FROM m", &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_cleanly_and_they_resume_when_space_is_freed() {
    let root = data_dir();
    let mnt = Tmpfs::mount(&root.path().join("mnt"), TMPFS_MIB);
    let dir = mnt.path.join("data");
    let log = root.path().join("eddy.log");
    // Small memtables, so that flushes (and their failures) happen while the disk fills.
    let mut s = Server::start_logged(&dir, &["--memtable-flush-bytes", "1048576"], &log);
    balloon(&mnt.path.join("balloon"), BALLOON_MIB);

    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut acked = 0usize;
    let mut next = 0usize;
    let refused = loop {
        assert!(
            next < 5_000 * BATCH_ROWS,
            "no write was refused after {next} rows on a {TMPFS_MIB} MiB disk"
        );
        let (status, body) = s.write_lp(batch(next, &mut noise)).await;
        next += BATCH_ROWS;
        match status {
            204 => acked += BATCH_ROWS,
            507 => break body,
            other => panic!("write answered {other} before the disk was full: {body}"),
        }
    };
    assert!(acked > 0, "the disk was full before the first write");
    assert!(refused.contains("disk full"), "{refused}");
    assert!(refused.contains("insufficient storage"), "{refused}");

    // Now take the last free pages too, so every write that needs space meets a full disk.
    let filler = mnt.path.join("filler");
    let mut attempts = 0;
    loop {
        fill_the_rest(&filler);
        let (status, body) = s.write_lp(batch(next, &mut noise)).await;
        next += BATCH_ROWS;
        match status {
            204 => acked += BATCH_ROWS,
            507 => {
                assert!(body.contains("disk full"), "{body}");
                break;
            }
            other => panic!("write answered {other} on a full disk: {body}"),
        }
        attempts += 1;
        assert!(
            attempts < FULL_ATTEMPTS,
            "writes kept working on a full disk"
        );
    }

    let pg = s.pg().await;
    let mut attempts = 0;
    loop {
        // Each attempt writes its own keys, so one that works is counted like any write.
        let values: Vec<String> = (0..200)
            .map(|i| {
                format!(
                    "('2024-01-02T00:{:02}:{:02}', 'pg{attempts}', {i}, '{}')",
                    i / 60,
                    i % 60,
                    noise.hex(256)
                )
            })
            .collect();
        let insert = format!(
            "INSERT INTO m (time, host, v, s) VALUES {}",
            values.join(", ")
        );
        fill_the_rest(&filler);
        match pg.execute(&insert, &[]).await {
            Ok(n) => acked += n as usize,
            Err(e) => {
                assert_eq!(sqlstate(&e, "INSERT"), "53100", "{e}");
                break;
            }
        }
        attempts += 1;
        assert!(
            attempts < FULL_ATTEMPTS,
            "INSERT kept working on a full disk"
        );
    }
    let mut attempts = 0;
    let refused_table = loop {
        let name = format!("t{attempts}");
        let create = format!(
            "CREATE TABLE {name} (time TIMESTAMP NOT NULL, host TEXT, v DOUBLE PRECISION, \
             PRIMARY KEY (host, time))"
        );
        fill_the_rest(&filler);
        if let Err(e) = pg.execute(&create, &[]).await {
            assert_eq!(sqlstate(&e, "CREATE TABLE"), "53100", "{e}");
            break name;
        }
        attempts += 1;
        assert!(
            attempts < FULL_ATTEMPTS,
            "CREATE TABLE kept working on a full disk"
        );
    };

    // Reads and health go on.
    assert_eq!(count(&s).await, acked as i64);
    let health = reqwest::get(s.url("/health")).await.expect("health");
    assert_eq!(health.status().as_u16(), 200);

    // Free the space: writes resume without a restart.
    std::fs::remove_file(&filler).expect("remove the filler");
    std::fs::remove_file(mnt.path.join("balloon")).expect("remove the balloon");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = s.write_lp(batch(next, &mut noise)).await;
        next += BATCH_ROWS;
        match status {
            204 => {
                acked += BATCH_ROWS;
                break;
            }
            507 => assert!(
                Instant::now() < deadline,
                "writes did not resume within 30 s of freeing space: {body}"
            ),
            other => panic!("write answered {other} after space was freed: {body}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..20 {
        let (status, body) = s.write_lp(batch(next, &mut noise)).await;
        next += BATCH_ROWS;
        assert_eq!(status, 204, "{body}");
        acked += BATCH_ROWS;
    }
    // The refused CREATE TABLE changed nothing and runs now.
    let create = format!(
        "CREATE TABLE {refused_table} (time TIMESTAMP NOT NULL, host TEXT, \
         v DOUBLE PRECISION, PRIMARY KEY (host, time))"
    );
    pg.execute(&create, &[])
        .await
        .expect("CREATE TABLE after space was freed");
    let insert = format!("INSERT INTO {refused_table} VALUES ('2024-01-01T00:00:00', 'a', 1.5)");
    pg.execute(&insert, &[])
        .await
        .expect("INSERT after space was freed");
    assert_eq!(count(&s).await, acked as i64);

    // Everything acknowledged survives a restart, exactly once.
    assert_eq!(
        s.stop(),
        Some(0),
        "SIGTERM must flush and exit 0 once space is back"
    );
    s.restart();
    assert_eq!(count(&s).await, acked as i64);
    let created: i64 = s
        .pg()
        .await
        .query_one(&format!("SELECT count(*) FROM {refused_table}"), &[])
        .await
        .expect("count the created table")
        .get(0);
    assert_eq!(created, 1);
    s.stop();

    let log = std::fs::read_to_string(&log).expect("server log");
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}
