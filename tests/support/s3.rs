//! A real S3-compatible server for the tests of the bucket backend: `s3s-fs` (the s3s
//! project's server, objects kept as files under a folder) on a free loopback port, with
//! SigV4 authentication on, stopped when dropped. `scripts/test` installs it when missing;
//! `EASEL_TEST_S3_SERVER` names another binary.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::Options;

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "easel-test";
/// Its secret.
pub const SECRET_KEY: &str = "easel-test-secret";

/// A running (or stopped) server and its data folder.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    port: u16,
    root: tempfile::TempDir,
    child: Option<Child>,
}

/// The server binary: `EASEL_TEST_S3_SERVER`, else `s3s-fs` from `PATH` or cargo's bin folder.
fn server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("EASEL_TEST_S3_SERVER") {
        return PathBuf::from(path);
    }
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin/s3s-fs"));
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("s3s-fs"))
        .chain(cargo_bin)
        .find(|candidate| candidate.is_file())
        .expect(
            "s3s-fs is missing: scripts/test installs it (cargo install s3s-fs --version 0.14.1 --features binary --locked)",
        )
}

impl S3Server {
    /// Starts a server holding the empty bucket `bucket`.
    pub async fn start(bucket: &str) -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join(bucket)).expect("bucket folder");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            root,
            child: None,
        };
        server.resume().await;
        server
    }

    /// Starts the stopped server again on the same port and data.
    pub async fn resume(&mut self) {
        assert!(self.child.is_none(), "the S3 server is already running");
        let child = Command::new(server_bin())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting s3s-fs");
        self.child = Some(child);
        let start = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "s3s-fs did not listen on port {}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Kills the server (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The file the server keeps object `key` of `bucket` in (to look at stored bytes, or to
    /// plant an object, without going through easel).
    pub fn object_file(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.path().join(bucket).join(key)
    }

    /// The objects of `bucket`, as keys.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let base = self.root.path().join(bucket);
        let mut keys = Vec::new();
        let mut folders = vec![base.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).expect("bucket folder").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    folders.push(path);
                } else {
                    let key = path.strip_prefix(&base).unwrap().to_string_lossy();
                    keys.push(key.into_owned());
                }
            }
        }
        keys.sort();
        keys
    }

    /// `options` with easel's assets in `bucket` on this server under `prefix`, credentials
    /// in the `AWS_*` variables, and `extra` added to the `[assets]` table.
    pub fn host_options(
        &self,
        options: Options,
        bucket: &str,
        prefix: &str,
        extra: &str,
    ) -> Options {
        options
            .toml(&format!(
                "[assets]\nbucket = \"{bucket}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\npath_style = true\nkey_prefix = \"{prefix}\"\n{extra}",
                self.endpoint
            ))
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
