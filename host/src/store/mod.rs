//! Storage: one sqlx `Any` pool over SQLite (embedded default) or PostgreSQL.
//!
//! Invariants:
//! - Migrations are embedded, one set per backend, and applied at start before anything runs.
//! - On SQLite every write happens while its writer holds the one writer's turn
//!   ([`Store::writer`] takes it, then the writer pool's one connection), so writers queue
//!   in-process instead of spinning on `SQLITE_BUSY`; reads use `reader` (several
//!   connections, WAL). The common task writes (an unpriced, unlimited insert, a success)
//!   run, holding only the turn, on a second connection on the calling thread ([`inline`]),
//!   saving sqlx's hand-off of each statement to its connection's thread, and the round trip
//!   sqlx makes to that thread whenever a connection it lent comes back.
//!   `synchronous=NORMAL` in WAL mode keeps every committed transaction across `kill -9` of
//!   the process (only an OS crash or power loss can drop the last commits); set
//!   `[storage] sqlite_synchronous = "FULL"` in `easel.toml` to survive those too. No commit
//!   checkpoints the WAL (its fsync would stall the request that crossed the threshold): a
//!   reader connection copies it into the database file every 250 ms, passively, and once it
//!   has grown past about 16 MiB the writer is held for one checkpoint that lets the next
//!   commit start the WAL over (under steady writes a passive one never catches up, and the
//!   file would grow without end).
//! - SQLite connections are lent without the pool's liveness ping (a file opened in this
//!   process cannot hang up), and task inserts and terminal transitions that wait for the
//!   writer at the same time are committed together ([`tasks::WriteQueue`]), each caller
//!   answered only after the commit that holds its write. A client's limit rows are read
//!   at admission at most every two seconds, and again at once after this host changed them
//!   ([`limits::RowCache`]).
//! - On PostgreSQL both handles are the same pool; queue claims use `FOR UPDATE SKIP LOCKED`.
//! - SQL is written once with `$N` placeholders, which both drivers accept; the few
//!   backend-specific fragments come from [`Store::skip_locked`].
//! - Every statement on tasks, the webhook outbox and idempotency keys lives in [`tasks`].

pub mod tasks;

mod inline;

pub mod breakers;

pub mod keys;

pub mod limits;

pub mod workers;

use std::{future::Future, str::FromStr, sync::Arc, time::Duration};

use anyhow::Context;
use sqlx::{
    Any, AnyPool,
    any::{AnyPoolOptions, install_default_drivers},
    pool::PoolConnection,
    postgres::PgConnectOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};
use tokio::sync::OwnedMutexGuard;

/// Applies `migrator` over one native connection (the `Any` driver cannot migrate).
macro_rules! migrate_with {
    ($options:expr, $migrator:expr) => {{
        use sqlx::migrate::Migrate;
        use sqlx::{ConnectOptions, Connection};
        let migrator = $migrator;
        let mut conn = $options.connect().await.context("opening the database")?;
        conn.ensure_migrations_table()
            .await
            .context("reading the database's migrations")?;
        let applied: Vec<i64> = conn
            .list_applied_migrations()
            .await
            .context("reading the database's migrations")?
            .iter()
            .map(|m| m.version)
            .collect();
        let known: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        check_migrations(&applied, &known)?;
        migrator
            .run(&mut conn)
            .await
            .context("applying migrations")?;
        conn.close().await?;
        let newly: Vec<i64> = known.into_iter().filter(|v| !applied.contains(v)).collect();
        if let (Some(first), Some(last)) = (newly.first(), newly.last()) {
            tracing::info!(first, last, applied = newly.len(), "database migrated");
        }
    }};
}

/// Refuses a database a newer easel migrated: one with migrations this release does not know
/// (an old release cannot read what a newer one wrote, and would fail on it later).
fn check_migrations(applied: &[i64], known: &[i64]) -> anyhow::Result<()> {
    let unknown: Vec<String> = applied
        .iter()
        .filter(|version| !known.contains(version))
        .map(i64::to_string)
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the database was migrated by a newer release of easel (its migrations {} are unknown \
         to this one, which knows up to {}): run that release or a later one, or restore a \
         backup taken before the upgrade",
        unknown.join(", "),
        known.last().copied().unwrap_or_default()
    )
}

/// Which database is behind the pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file in the data dir.
    Sqlite,
    /// A shared PostgreSQL server.
    Postgres,
}

/// The database handles every part of the host shares.
#[derive(Clone)]
pub struct Store {
    /// Serialized writes (SQLite) or the shared pool (PostgreSQL); lent through
    /// [`Store::writer`].
    writer_pool: AnyPool,
    /// The turn every SQLite writer holds while it writes; `None` on PostgreSQL.
    turn: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Concurrent reads.
    pub reader: AnyPool,
    /// Which backend this is.
    pub backend: Backend,
    /// The URL it was opened with (PostgreSQL's LISTEN needs its own connection).
    pub url: String,
    /// Task writes waiting for SQLite's writer, committed together.
    writes: Arc<tasks::WriteQueue>,
    /// Clients' limit rows as last read (SQLite).
    limit_rows: Arc<limits::RowCache>,
    /// The connection for the common task writes on the calling thread (SQLite).
    inline: Option<Arc<inline::InlineWriter>>,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`.
    pub async fn open(url: &str, sqlite_synchronous: &str) -> anyhow::Result<Self> {
        install_default_drivers();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .context("DATABASE_URL is not a valid postgres URL")?;
            migrate_with!(options, sqlx::migrate!("./migrations/postgres"));
            let pool = AnyPoolOptions::new()
                .max_connections(32)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .with_context(|| format!("connecting to {}", redact(url)))?;
            return Ok(Self {
                writer_pool: pool.clone(),
                turn: None,
                reader: pool,
                backend: Backend::Postgres,
                url: url.into(),
                writes: Default::default(),
                limit_rows: Default::default(),
                inline: None,
            });
        }
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        // Create the file and switch it to WAL once, natively, before the Any pools open it.
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(
                SqliteSynchronous::from_str(sqlite_synchronous).map_err(anyhow::Error::msg)?,
            );
        migrate_with!(options, sqlx::migrate!("./migrations/sqlite"));
        let any_url = format!("sqlite://{path}");
        let pragmas = format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={sqlite_synchronous}; PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;"
        );
        // The writer never checkpoints in a commit (that fsync would stall the request whose
        // commit crossed the threshold); a reader connection does, in the background.
        let writer_pragmas = format!("{pragmas} PRAGMA wal_autocheckpoint=0;");
        let open = |max: u32, pragmas: &str| {
            let pragmas = pragmas.to_string();
            AnyPoolOptions::new()
                .max_connections(max)
                .min_connections(1)
                // sqlx pings a connection before lending it (and again when it comes back):
                // on SQLite each ping is one more round trip to the connection's worker
                // thread, and a connection to a file in this process cannot have gone away.
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(move |conn, _| Box::pin(apply_pragmas(conn, pragmas.clone())))
                .connect(&any_url)
        };
        let writer = open(1, &writer_pragmas).await?;
        let reader = open(8, &pragmas).await?;
        // The file sqlx resolved from the URL (its query parameters are not part of it).
        let inline = inline::InlineWriter::open(options.get_filename(), &writer_pragmas)
            .context("opening the SQLite connection for task writes")?;
        let store = Self {
            writer_pool: writer,
            turn: Some(Default::default()),
            reader,
            backend: Backend::Sqlite,
            url: any_url,
            writes: Default::default(),
            limit_rows: Default::default(),
            inline: Some(Arc::new(inline)),
        };
        tokio::spawn(checkpoint_while_open(store.clone()));
        Ok(store)
    }

    /// Whether the database answers a query within a couple of seconds (`/health`).
    pub async fn answers(&self) -> bool {
        let ping = sqlx::query("SELECT 1").execute(&self.reader);
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(2), ping).await,
            Ok(Ok(_))
        )
    }

    /// A connection to write on. On SQLite it holds the one writer's turn until dropped, so
    /// a write waits here for the one before it, never on SQLite's lock.
    pub async fn writer(&self) -> sqlx::Result<Writer> {
        let turn = self.write_turn().await;
        self.writer_within(turn).await
    }

    /// The writer's turn alone, for writes on the [`inline`] connection (SQLite; `None` on
    /// PostgreSQL); [`Store::writer_within`] adds the pool's connection.
    pub(crate) async fn write_turn(&self) -> Option<OwnedMutexGuard<()>> {
        match &self.turn {
            Some(turn) => Some(turn.clone().lock_owned().await),
            None => None,
        }
    }

    /// The pool's connection for the holder of `turn` (from [`Store::write_turn`]).
    pub(crate) async fn writer_within(
        &self,
        turn: Option<OwnedMutexGuard<()>>,
    ) -> sqlx::Result<Writer> {
        Ok(Writer {
            conn: self.writer_pool.acquire().await?,
            _turn: turn,
        })
    }

    /// `FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's single writer needs none.
    pub fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }
}

/// A connection lent for writing; on SQLite it holds the writer's turn until dropped.
pub struct Writer {
    conn: PoolConnection<Any>,
    _turn: Option<OwnedMutexGuard<()>>,
}

impl Writer {
    /// Begins a transaction, which holds this writer until it ends.
    pub async fn begin(&mut self) -> sqlx::Result<sqlx::Transaction<'_, Any>> {
        sqlx::Connection::begin(&mut *self.conn).await
    }
}

impl std::ops::Deref for Writer {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// WAL frames (a page each, about 4 KiB) past which the WAL is started over.
const RESTART_AFTER_FRAMES: i64 = 4096;

/// Copies committed pages from the WAL into the database file every [`CHECKPOINT_EVERY`]
/// until the pools close, so that no commit pays for it: passively on a `reader` (never
/// waiting for readers or the writer), and, once the WAL holds more than
/// [`RESTART_AFTER_FRAMES`], once more on the `writer`, whose commits wait meanwhile, so that
/// this one reaches the WAL's end and the next commit writes it from the start again. Under
/// steady writes a checkpoint that lets commits land while it copies never reaches the end,
/// and SQLite only starts over a WAL that was copied whole.
async fn checkpoint_while_open(store: Store) {
    let reader = &store.reader;
    while !reader.is_closed() {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        let mut outcome = match reader.acquire().await {
            Ok(mut conn) => checkpoint(&mut conn).await,
            Err(error) => Err(error),
        };
        if matches!(outcome, Ok(frames) if frames > RESTART_AFTER_FRAMES) {
            outcome = match store.writer().await {
                Ok(mut writer) => checkpoint(&mut writer).await,
                Err(error) => Err(error),
            };
        }
        if let Err(error) = outcome
            && !reader.is_closed()
        {
            tracing::warn!(%error, "checkpointing the SQLite WAL failed");
        }
    }
}

/// Runs one passive checkpoint on `conn`; returns the WAL's length in frames.
async fn checkpoint(conn: &mut sqlx::AnyConnection) -> Result<i64, sqlx::Error> {
    let (_busy, frames, _copied): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(conn)
            .await?;
    Ok(frames)
}

/// Per-connection SQLite settings (WAL itself is persistent in the file).
async fn apply_pragmas(conn: &mut sqlx::AnyConnection, pragmas: String) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    conn.execute(sqlx::raw_sql(&pragmas)).await?;
    Ok(())
}

/// Hides the passwords of a database URL for logs: the one before the host and those given
/// as query parameters (`?password=`, `?sslpassword=`), which the drivers also take.
pub fn redact(url: &str) -> String {
    let secret = |name: &str| matches!(name, "password" | "sslpassword");
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_string();
    };
    let in_query = parsed.query_pairs().any(|(name, _)| secret(&name));
    if parsed.password().is_none() && !in_query {
        return url.to_string();
    }
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if in_query {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| {
                let value = if secret(&name) {
                    "***".into()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// A page of `limit` rows, newest first, that never splits a millisecond, so that paging on
/// with `before` set to the last row's creation time skips nothing; and whether rows remain.
/// `fetch(n)` reads the first `n` rows in that order. The rows created in the same
/// millisecond as the page's last one come with it, so a page is never shorter than `limit`
/// while rows remain (a client that stops at a short page misses nothing), and a burst of
/// submits in one millisecond makes it longer.
pub async fn page_of_whole_milliseconds<T, Fetched>(
    limit: i64,
    created_at: impl Fn(&T) -> i64,
    mut fetch: impl FnMut(i64) -> Fetched,
) -> anyhow::Result<(Vec<T>, bool)>
where
    Fetched: Future<Output = anyhow::Result<Vec<T>>>,
{
    let mut asked = limit + 1;
    loop {
        let rows = fetch(asked).await?;
        if let Some(page) = whole_milliseconds(rows, limit as usize, asked as usize, &created_at) {
            return Ok(page);
        }
        asked = asked.saturating_mul(2);
    }
}

/// [`page_of_whole_milliseconds`] on the `asked` rows read (`limit` is at least 1); `None`
/// when every row after the first `limit` shares the last one's millisecond and more may
/// follow it.
fn whole_milliseconds<T>(
    mut rows: Vec<T>,
    limit: usize,
    asked: usize,
    created_at: impl Fn(&T) -> i64,
) -> Option<(Vec<T>, bool)> {
    if rows.len() <= limit {
        return Some((rows, false));
    }
    let boundary = created_at(&rows[limit - 1]);
    match rows[limit..]
        .iter()
        .position(|row| created_at(row) != boundary)
    {
        Some(also) => {
            rows.truncate(limit + also);
            Some((rows, true))
        }
        None if rows.len() < asked => Some((rows, false)),
        None => None,
    }
}

#[cfg(test)]
impl Store {
    /// A SQLite store in `dir/easel.db`, opened as `easel serve` opens one.
    pub(crate) async fn open_in(dir: &std::path::Path) -> Store {
        let url = format!("sqlite://{}", dir.join("easel.db").display());
        Store::open(&url, "NORMAL").await.unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::{
        CHECKPOINT_EVERY, RESTART_AFTER_FRAMES, Store, page_of_whole_milliseconds, redact,
        whole_milliseconds,
    };

    /// An older release started on a database a newer one migrated stops, saying so, before
    /// it changes anything.
    #[tokio::test]
    async fn a_database_a_newer_release_migrated_is_refused_naming_why() {
        use sqlx::{ConnectOptions, sqlite::SqliteConnectOptions};
        use std::str::FromStr;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("easel.db").display());
        drop(Store::open(&url, "NORMAL").await.unwrap());
        let mut conn = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from a later release', TRUE, X'00', 1)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        let refused = Store::open(&url, "NORMAL").await.err().expect("refused");
        let message = format!("{refused:#}");
        assert!(message.contains("migrated by a newer release"), "{message}");
        assert!(message.contains("9999"), "{message}");
    }

    #[tokio::test]
    async fn a_closed_database_does_not_answer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).await;
        assert!(store.answers().await);
        store.reader.close().await;
        assert!(!store.answers().await);
    }

    #[test]
    fn database_passwords_never_reach_the_logs() {
        assert_eq!(
            redact("postgres://easel:hunter2@db:5432/easel"),
            "postgres://easel:***@db:5432/easel"
        );
        let redacted = redact("postgres://easel@db/easel?sslmode=require&password=hunter2");
        assert!(!redacted.contains("hunter2"), "{redacted}");
        assert!(redacted.contains("sslmode=require"), "{redacted}");
        assert!(!redact("postgres://db/e?sslpassword=hunter2").contains("hunter2"));
        let plain = "sqlite://easel-data/easel.db";
        assert_eq!(redact(plain), plain);
    }

    /// Commits never checkpoint on the writer; the background checkpoint copies them into the
    /// database file soon after.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_reach_the_database_file_through_the_background_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).await;
        let path = dir.path().join("easel.db");
        let (every,): (i64,) = sqlx::query_as("PRAGMA wal_autocheckpoint")
            .fetch_one(&mut *store.writer().await.unwrap())
            .await
            .unwrap();
        assert_eq!(every, 0, "the writer never checkpoints in a commit");
        tokio::time::sleep(CHECKPOINT_EVERY * 2).await;
        let before = std::fs::metadata(&path).unwrap().len();
        sqlx::query("CREATE TABLE filler (n INTEGER PRIMARY KEY, pad TEXT NOT NULL)")
            .execute(&mut *store.writer().await.unwrap())
            .await
            .unwrap();
        for n in 0..2000 {
            sqlx::query("INSERT INTO filler (n, pad) VALUES ($1, $2)")
                .bind(n)
                .bind(format!("{n:0>64}"))
                .execute(&mut *store.writer().await.unwrap())
                .await
                .unwrap();
        }
        let wal = path.with_extension("db-wal");
        assert!(std::fs::metadata(&wal).unwrap().len() > 0);
        tokio::time::sleep(CHECKPOINT_EVERY * 4).await;
        let after = std::fs::metadata(&path).unwrap().len();
        assert!(
            after >= before + 2000 * 64,
            "the rows reached the database file: {before} -> {after} bytes"
        );
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM filler")
            .fetch_one(&store.reader)
            .await
            .unwrap();
        assert_eq!(count, 2000);
    }

    /// Under steady commits the WAL is started over again and again instead of growing with
    /// every commit (it grew to 558 MB in a few minutes of chats before the writer took part).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn steady_commits_keep_the_wal_from_growing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).await;
        let path = dir.path().join("easel.db");
        sqlx::query("CREATE TABLE filler (n INTEGER PRIMARY KEY)")
            .execute(&mut *store.writer().await.unwrap())
            .await
            .unwrap();
        // Long enough for a dozen checkpoints, and at least four WALs' worth of commits.
        let started = std::time::Instant::now();
        let mut commits = 0_i64;
        while started.elapsed() < CHECKPOINT_EVERY * 12 || commits < 4 * RESTART_AFTER_FRAMES {
            sqlx::query("INSERT INTO filler (n) VALUES ($1)")
                .bind(commits)
                .execute(&mut *store.writer().await.unwrap())
                .await
                .unwrap();
            commits += 1;
        }
        // Each commit appends at least one frame of a page and its 24-byte header.
        let grown_without_end = commits * (4096 + 24);
        let wal = std::fs::metadata(path.with_extension("db-wal"))
            .unwrap()
            .len() as i64;
        assert!(
            wal < grown_without_end / 2,
            "{commits} commits left a WAL of {wal} bytes"
        );
    }

    #[test]
    fn pages_never_split_a_millisecond() {
        // Creation times, newest first; pages of 3, four rows read, then eight.
        let page = |rows: Vec<i64>| whole_milliseconds(rows, 3, 4, |t| *t);
        let longer = |rows: Vec<i64>| whole_milliseconds(rows, 3, 8, |t| *t);
        assert_eq!(page(vec![9, 8, 7, 6]), Some((vec![9, 8, 7], true)));
        assert_eq!(page(vec![9, 8, 7]), Some((vec![9, 8, 7], false)));
        // The last row's millisecond comes whole, read to its end first: never a short page
        // while rows remain.
        assert_eq!(page(vec![9, 8, 7, 7]), None);
        assert_eq!(longer(vec![9, 8, 7, 7, 6]), Some((vec![9, 8, 7, 7], true)));
        assert_eq!(page(vec![9, 7, 7, 7]), None);
        assert_eq!(longer(vec![9, 7, 7, 7, 5]), Some((vec![9, 7, 7, 7], true)));
        assert_eq!(page(vec![7, 7, 7, 7]), None);
        assert_eq!(
            longer(vec![7, 7, 7, 7, 7, 6]),
            Some((vec![7, 7, 7, 7, 7], true))
        );
        assert_eq!(
            longer(vec![7, 7, 7, 7, 7]),
            Some((vec![7, 7, 7, 7, 7], false))
        );
    }

    #[tokio::test]
    async fn a_burst_within_one_millisecond_is_paged_whole() {
        let rows: Vec<i64> = [vec![9, 8], vec![7; 10], vec![5, 4, 3, 2]].concat();
        let mut before = i64::MAX;
        let mut seen = Vec::new();
        loop {
            let (page, more) = page_of_whole_milliseconds(
                3,
                |t: &i64| *t,
                |n| {
                    let rows = rows
                        .iter()
                        .copied()
                        .filter(|t| *t < before)
                        .take(n as usize);
                    std::future::ready(Ok(rows.collect::<Vec<_>>()))
                },
            )
            .await
            .unwrap();
            seen.extend(page.iter().copied());
            if !more {
                break;
            }
            assert!(page.len() >= 3, "a short page while rows remain: {page:?}");
            before = *page.last().unwrap();
        }
        assert_eq!(seen, rows, "nothing skipped, nothing twice");
    }
}
