//! The query service: a DataFusion session over the lake with the
//! `events` table (Hive-partitioned by category and date) and the category
//! views, executing only what the `guard` module lets through, within limits.

mod guard;
mod prune;
mod render;
mod views;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::cache::TableScopedPath;
use datafusion::execution::cache::cache_manager::{
    CacheManagerConfig, CachedFileMetadata, FileMetadataCache, FileStatisticsCache,
};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext, col};
use futures::StreamExt;
use pipewatch_schema::tables::{CATEGORY_VIEWS, DEAD_LETTERS, EVENTS};

pub use guard::allowed_tables;
pub use render::{OutputFormat, render};

/// Limits every query runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Memory the query may hold, in bytes; nothing spills to disk.
    pub memory_bytes: usize,
    /// Wall-clock time before the query is cancelled.
    pub timeout: Duration,
    /// Rows a result may have; a larger result is an error, not a silent cut.
    pub max_rows: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            memory_bytes: 2 * 1024 * 1024 * 1024,
            timeout: Duration::from_secs(60),
            max_rows: 100_000,
        }
    }
}

/// Errors a query can end with. Messages are meant for the analyst.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The statement is not a read-only query.
    #[error("refused: {0}")]
    Refused(String),
    /// The statement does not parse or plan.
    #[error("invalid query: {0}")]
    Invalid(String),
    /// The query ran over its memory budget.
    #[error("query exceeded its memory limit of {limit_mib} MiB: {detail}")]
    Memory { limit_mib: usize, detail: String },
    /// The query ran over its time budget.
    #[error("query exceeded its time limit of {0:?} and was cancelled")]
    Timeout(Duration),
    /// The result has more rows than allowed.
    #[error("result exceeds the limit of {0} rows; add a LIMIT or aggregate")]
    TooManyRows(usize),
    /// The lake could not be opened.
    #[error("cannot open the lake at {path}: {detail}")]
    Lake { path: String, detail: String },
    /// Execution failed for another reason.
    #[error("query failed: {0}")]
    Execution(String),
}

/// A finished query: the batches and their row count.
#[derive(Debug)]
pub struct QueryOutput {
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    pub schema: datafusion::arrow::datatypes::SchemaRef,
}

/// How a service's scans read the lake's text columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextScan {
    /// As string views, which point into the pages read (see [`views`]).
    Views,
    /// As plain strings, each copied out of its page.
    Plain,
}

/// Read-only SQL over one data directory.
pub struct QueryService {
    ctx: SessionContext,
    limits: QueryLimits,
    /// Tables added after opening (see [`QueryService::add_table`]).
    extra_tables: Vec<String>,
}

impl std::fmt::Debug for QueryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryService")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl QueryService {
    /// Opens the lake under `data_dir`. An empty or missing lake is a
    /// valid, empty `events` table.
    pub async fn open(data_dir: &Path, limits: QueryLimits) -> Result<Self, QueryError> {
        Self::open_scanning(data_dir, limits, TextScan::Views).await
    }

    /// Opens the lake for reading its whole history in time order, as a
    /// detection backfill or warm-up does through [`QueryService::stream`].
    /// Text is scanned as plain strings: sorting views of the whole history
    /// would keep every page they point into alive until the sort ends.
    pub async fn open_for_history(
        data_dir: &Path,
        limits: QueryLimits,
    ) -> Result<Self, QueryError> {
        Self::open_scanning(data_dir, limits, TextScan::Plain).await
    }

    async fn open_scanning(
        data_dir: &Path,
        limits: QueryLimits,
        text: TextScan,
    ) -> Result<Self, QueryError> {
        let lake_error = |detail: String| QueryError::Lake {
            path: data_dir.display().to_string(),
            detail,
        };
        let ctx = session(limits).map_err(lake_error)?;

        let events_dir = data_dir.join(pipewatch_schema::EVENTS_DIR);
        let table_schema = pipewatch_schema::table_schema();
        if has_parquet(&events_dir) {
            let url = ListingTableUrl::parse(format!("{}/", events_dir.display()))
                .map_err(|e| lake_error(e.to_string()))?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet")
                .with_table_partition_cols(vec![
                    ("category".to_owned(), DataType::Utf8),
                    ("date".to_owned(), DataType::Utf8),
                ])
                .with_file_sort_order(vec![vec![col("event_time").sort(true, false)]]);
            let schema = match text {
                TextScan::Views => views::scan_schema(),
                TextScan::Plain => pipewatch_schema::file_schema(),
            };
            let config = ListingTableConfig::new(url)
                .with_listing_options(options)
                .with_schema(schema);
            let mut table = ListingTable::try_new(config).map_err(|e| lake_error(e.to_string()))?;
            // A table built by hand, unlike one the session registers
            // itself, keeps no statistics cache unless given one. Entries
            // hold the schema they were read under, so the plain-text
            // tables of history reads stay out of the shared cache rather
            // than evict what the views tables put there.
            if text == TextScan::Views {
                table =
                    table.with_cache(ctx.runtime_env().cache_manager.get_file_statistic_cache());
            }
            ctx.register_table(EVENTS, Arc::new(table))
                .map_err(|e| lake_error(e.to_string()))?;
        } else {
            let empty = MemTable::try_new(table_schema, vec![vec![]])
                .map_err(|e| lake_error(e.to_string()))?;
            ctx.register_table(EVENTS, Arc::new(empty))
                .map_err(|e| lake_error(e.to_string()))?;
        }
        register_dead_letters(&ctx, data_dir).map_err(|e| lake_error(e.to_string()))?;
        register_alerts(&ctx, data_dir).map_err(lake_error)?;
        register_notifications(&ctx, data_dir).map_err(lake_error)?;
        for view in CATEGORY_VIEWS {
            let categories: Vec<String> = view
                .categories
                .iter()
                .map(|c| format!("'{}'", c.as_str()))
                .collect();
            let sql = format!(
                "CREATE VIEW {} AS SELECT * FROM {EVENTS} WHERE category IN ({})",
                view.name,
                categories.join(", ")
            );
            ctx.sql(&sql).await.map_err(|e| lake_error(e.to_string()))?;
        }
        Ok(QueryService {
            ctx,
            limits,
            extra_tables: Vec::new(),
        })
    }

    /// A service with no tables of its own, for data held in memory
    /// (see [`QueryService::add_batches`]) under the same guard and limits.
    pub fn in_memory(limits: QueryLimits) -> Result<Self, QueryError> {
        Ok(QueryService {
            ctx: session(limits).map_err(QueryError::Execution)?,
            limits,
            extra_tables: Vec::new(),
        })
    }

    /// Makes `batch` readable as the table `name`, for callers that hold
    /// data the lake does not (the dashboard's audit log, for admins).
    pub fn add_table(&mut self, name: &str, batch: RecordBatch) -> Result<(), QueryError> {
        self.add_batches(name, batch.schema(), vec![batch])
    }

    /// Makes `batches` (all of `schema`, possibly none) readable as the
    /// table `name`.
    pub fn add_batches(
        &mut self,
        name: &str,
        schema: datafusion::arrow::datatypes::SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<(), QueryError> {
        let table = MemTable::try_new(schema, vec![batches])
            .map_err(|e| QueryError::Invalid(e.to_string()))?;
        self.ctx
            .register_table(name, Arc::new(table))
            .map_err(|e| QueryError::Invalid(e.to_string()))?;
        self.extra_tables.push(name.to_owned());
        Ok(())
    }

    /// Stops reading only the days an `event_time` bound covers (answers
    /// stay the same, more files are read), to measure what that buys.
    pub fn without_date_pruning(self) -> Self {
        self.ctx
            .remove_optimizer_rule(prune::DatePartitionPruning::NAME);
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> QueryLimits {
        self.limits
    }

    /// Runs one read-only statement and collects its result.
    pub async fn query(&self, sql: &str) -> Result<QueryOutput, QueryError> {
        let plan = guard::plan_read_only(&self.ctx, sql, &self.extra_tables).await?;
        let run = async {
            match self.collect(plan.clone()).await {
                Err(Attempt::FileGone) => {
                    // Compaction merged away a file this session had
                    // listed: list the lake again and run once more.
                    self.forget_listings();
                    self.collect(plan).await.map_err(|attempt| match attempt {
                        Attempt::Failed(e) => e,
                        Attempt::FileGone => QueryError::Execution(
                            "the lake's files changed twice while the query ran; run it again"
                                .into(),
                        ),
                    })
                }
                Err(Attempt::Failed(e)) => Err(e),
                Ok(output) => Ok(output),
            }
        };
        tokio::time::timeout(self.limits.timeout, run)
            .await
            .map_err(|_| QueryError::Timeout(self.limits.timeout))?
    }

    async fn collect(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
    ) -> Result<QueryOutput, Attempt> {
        let limits = self.limits;
        let failed = |e: datafusion::error::DataFusionError| {
            if file_gone(&e) {
                Attempt::FileGone
            } else {
                Attempt::Failed(classify(e, limits))
            }
        };
        let frame = self.ctx.execute_logical_plan(plan).await.map_err(failed)?;
        let schema = views::plain_schema(&Arc::new(frame.schema().as_arrow().clone()));
        let mut stream = frame.execute_stream().await.map_err(failed)?;
        let mut batches = Vec::new();
        let mut rows = 0usize;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(failed)?;
            rows += batch.num_rows();
            if rows > limits.max_rows {
                return Err(Attempt::Failed(QueryError::TooManyRows(limits.max_rows)));
            }
            let batch = views::plain_batch(batch)
                .map_err(|e| Attempt::Failed(QueryError::Execution(e.to_string())))?;
            batches.push(batch);
        }
        Ok(QueryOutput {
            batches,
            rows,
            schema,
        })
    }

    /// Drops the session's cached file listings, so the next scan sees
    /// the files as they are now.
    fn forget_listings(&self) {
        if let Some(listings) = self.ctx.runtime_env().cache_manager.get_list_files_cache() {
            listings.clear();
        }
    }
}

/// How one run of a query ended when it did not answer.
enum Attempt {
    /// A listed file was gone when it was read.
    FileGone,
    Failed(QueryError),
}

/// Whether the error is a listed lake file that no longer exists.
fn file_gone(error: &datafusion::error::DataFusionError) -> bool {
    let text = error.to_string();
    text.contains(".parquet")
        && (text.contains("No such file or directory")
            || (text.contains("Object at location") && text.contains("not found")))
}

impl QueryService {
    /// Runs a read-only statement whose answer is one integer
    /// (`SELECT count(*) …`); an empty or null answer is 0.
    pub async fn count(&self, sql: &str) -> Result<u64, QueryError> {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::Int64Type;
        let out = self.query(sql).await?;
        let value = out
            .batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .and_then(|b| {
                b.column(0)
                    .as_primitive_opt::<Int64Type>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0);
        Ok(value.max(0) as u64)
    }

    /// Runs one read-only statement as a stream of batches, within the
    /// memory limit but without the row and time limits: for the engine's
    /// own long reads of history (warm-up, backfill), never for analysts.
    pub async fn stream(
        &self,
        sql: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<RecordBatch, QueryError>>, QueryError>
    {
        let plan = guard::plan_read_only(&self.ctx, sql, &self.extra_tables).await?;
        let limits = self.limits;
        let frame = self
            .ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| classify(e, limits))?;
        let stream = frame
            .execute_stream()
            .await
            .map_err(|e| classify(e, limits))?;
        Ok(stream
            .map(move |b| {
                let batch = b.map_err(|e| classify(e, limits))?;
                views::plain_batch(batch).map_err(|e| QueryError::Execution(e.to_string()))
            })
            .boxed())
    }
}

/// A DataFusion session within `limits`: nothing spills to disk, times
/// are UTC, and the JSON functions reach into native records.
fn session(limits: QueryLimits) -> Result<SessionContext, String> {
    let mut runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(limits.memory_bytes, 1.0)
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        );
    if !STOCK_FOOTER_CACHE.load(Ordering::Relaxed) {
        runtime = runtime.with_cache_manager(
            CacheManagerConfig::default()
                .with_file_metadata_cache(Some(footer_cache()))
                .with_metadata_cache_limit(FOOTER_CACHE_BYTES)
                .with_file_statistics_cache(Some(statistics_cache()))
                .with_file_statistics_cache_limit(STATISTICS_CACHE_BYTES),
        );
    }
    let runtime = runtime.build_arc().map_err(|e| e.to_string())?;
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .set_bool("datafusion.execution.parquet.pushdown_filters", true)
        .set_bool("datafusion.execution.parquet.reorder_filters", true);
    config.options_mut().execution.time_zone = Some("UTC".into());
    let mut ctx = SessionContext::new_with_config_rt(config, runtime);
    ctx.add_optimizer_rule(Arc::new(prune::DatePartitionPruning));
    // JSON functions (`json_get_str(raw, 'key')`, `raw->'key'`) reach into native records.
    datafusion_functions_json::register_all(&mut ctx).map_err(|e| e.to_string())?;
    Ok(ctx)
}

/// Bytes of Parquet footers and page indexes kept in memory for the whole
/// process: about 50 KB a file, so the footers of about ten thousand
/// day-and-category files stay cached (least recently used go first).
pub const FOOTER_CACHE_BYTES: usize = 512 * 1024 * 1024;

/// The footers of the lake's files, shared by every query service of the
/// process (the server reopens its service as the lake grows, and each
/// scan would otherwise parse every footer again). An entry is used only
/// while its file keeps the size and modification time it was read with.
fn footer_cache() -> Arc<FileMetadataCache> {
    static FOOTERS: OnceLock<Arc<FileMetadataCache>> = OnceLock::new();
    FOOTERS
        .get_or_init(|| {
            Arc::new(DefaultCache::new(FOOTER_CACHE_BYTES).with_name("pipewatch lake footers"))
        })
        .clone()
}

/// Bytes of per-file column statistics (row and null counts, minima and
/// maxima) kept for the whole process. The planner asks for them on every
/// scan, and a file missing from the cache has them recomputed from its
/// footer: a fifth to a quarter of a full scan of a 10M-event lake.
pub const STATISTICS_CACHE_BYTES: usize = 256 * 1024 * 1024;

/// The statistics of the lake's files, shared like [`footer_cache`]; an
/// entry is used only while its file keeps its size and modification time.
fn statistics_cache() -> Arc<FileStatisticsCache> {
    static STATISTICS: OnceLock<Arc<FileStatisticsCache>> = OnceLock::new();
    STATISTICS
        .get_or_init(|| {
            Arc::new(
                DefaultCache::<TableScopedPath, CachedFileMetadata>::new(STATISTICS_CACHE_BYTES)
                    .with_name("pipewatch lake statistics"),
            )
        })
        .clone()
}

/// How many of the lake's files the process holds statistics for.
pub fn cached_file_statistics() -> usize {
    statistics_cache().len()
}

/// How many of the lake's file footers the process holds in memory.
pub fn cached_footers() -> usize {
    footer_cache().len()
}

static STOCK_FOOTER_CACHE: AtomicBool = AtomicBool::new(false);

/// Makes the services opened from now on keep DataFusion's own footer
/// cache (one per session, 50 MB) instead of the process-wide one, to
/// measure what the latter buys.
pub fn use_stock_footer_cache() {
    STOCK_FOOTER_CACHE.store(true, Ordering::Relaxed);
}

/// Identifies what the lake's event files are now: it changes whenever a
/// file is committed, compacted away or rewritten, and costs one walk of
/// the directory (no file is opened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LakeVersion(u64);

/// The [`LakeVersion`] of the lake under `data_dir`.
pub fn lake_version(data_dir: &Path) -> LakeVersion {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    let mut pending = vec![data_dir.join(pipewatch_schema::EVENTS_DIR)];
    let mut files = Vec::new();
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                files.push((path, meta.len(), modified));
            }
        }
    }
    files.sort();
    files.hash(&mut hasher);
    LakeVersion(hasher.finish())
}

/// The alerts of the control database as a table (a snapshot taken when
/// the service opens), empty when detection never ran.
fn register_alerts(ctx: &SessionContext, data_dir: &Path) -> Result<(), String> {
    let schema = pipewatch_schema::tables::alerts_schema();
    let batches = if data_dir.join(crate::alerts::CONTROL_DB).exists() {
        let store = crate::alerts::AlertStore::open(data_dir).map_err(|e| e.to_string())?;
        let alerts = store
            .list(&crate::alerts::AlertFilter::default())
            .map_err(|e| e.to_string())?;
        vec![crate::alerts::alerts_batch(&alerts).map_err(|e| e.to_string())?]
    } else {
        vec![]
    };
    let table = MemTable::try_new(schema, vec![batches]).map_err(|e| e.to_string())?;
    ctx.register_table(pipewatch_schema::tables::ALERTS, Arc::new(table))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The notification outbox as a table (a snapshot taken when the service
/// opens): what was sent where, what is pending, what failed and why.
fn register_notifications(ctx: &SessionContext, data_dir: &Path) -> Result<(), String> {
    let records = crate::notify::notifications(data_dir).map_err(|e| e.to_string())?;
    let batch = crate::notify::notifications_batch(&records).map_err(|e| e.to_string())?;
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(|e| e.to_string())?;
    ctx.register_table(pipewatch_schema::tables::NOTIFICATIONS, Arc::new(table))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The dead-letter store as a table, empty when nothing was dead-lettered.
fn register_dead_letters(ctx: &SessionContext, data_dir: &Path) -> datafusion::error::Result<()> {
    let dir = data_dir.join(pipewatch_schema::DEAD_LETTER_DIR);
    let schema = pipewatch_schema::tables::dead_letter_schema();
    let has_files = std::fs::read_dir(&dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "ndjson"))
    });
    if !has_files {
        let empty = MemTable::try_new(schema, vec![vec![]])?;
        ctx.register_table(DEAD_LETTERS, Arc::new(empty))?;
        return Ok(());
    }
    let url = ListingTableUrl::parse(format!("{}/", dir.display()))?;
    let options =
        ListingOptions::new(Arc::new(JsonFormat::default())).with_file_extension(".ndjson");
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    ctx.register_table(DEAD_LETTERS, Arc::new(ListingTable::try_new(config)?))?;
    Ok(())
}

fn has_parquet(dir: &Path) -> bool {
    walk_has_parquet(dir, 0)
}

fn walk_has_parquet(dir: &Path, depth: usize) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            depth < 3 && walk_has_parquet(&path, depth + 1)
        } else {
            path.extension().is_some_and(|x| x == "parquet")
        }
    })
}

fn classify(error: datafusion::error::DataFusionError, limits: QueryLimits) -> QueryError {
    let text = error.to_string();
    if text.contains("Resources exhausted") {
        QueryError::Memory {
            limit_mib: limits.memory_bytes / (1024 * 1024),
            detail: text,
        }
    } else {
        QueryError::Execution(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn empty_lake(limits: QueryLimits) -> (tempfile::TempDir, QueryService) {
        let dir = tempfile::tempdir().expect("temp dir");
        let service = QueryService::open(dir.path(), limits).await.expect("opens");
        (dir, service)
    }

    #[tokio::test]
    async fn an_added_table_is_readable_by_this_service_only() {
        use datafusion::arrow::array::Int64Array;
        use datafusion::arrow::datatypes::{Field, Schema};
        let (dir, mut service) = empty_lake(QueryLimits::default()).await;
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))])
            .expect("batch");
        service.add_table("extra", batch).expect("added");
        assert_eq!(
            service
                .count("SELECT sum(n) FROM extra")
                .await
                .expect("sum"),
            6
        );
        let other = QueryService::open(dir.path(), QueryLimits::default())
            .await
            .expect("opens");
        let error = other
            .query("SELECT * FROM extra")
            .await
            .expect_err("unknown");
        assert!(matches!(error, QueryError::Invalid(_)), "{error}");
    }

    #[tokio::test]
    async fn an_empty_lake_answers_with_every_table() {
        let (_dir, service) = empty_lake(QueryLimits::default()).await;
        for table in allowed_tables() {
            let out = service
                .query(&format!("SELECT count(*) AS n FROM {table}"))
                .await
                .unwrap_or_else(|e| panic!("{table}: {e}"));
            assert_eq!(out.rows, 1, "{table}");
        }
    }

    #[tokio::test]
    async fn anything_but_reading_is_refused_before_it_runs() {
        let (dir, service) = empty_lake(QueryLimits::default()).await;
        let outside = dir.path().join("outside.csv");
        let refused = [
            "CREATE TABLE t AS SELECT 1",
            "CREATE VIEW v AS SELECT 1",
            "DROP VIEW pipeline_runs",
            "INSERT INTO events SELECT * FROM events",
            "DELETE FROM events",
            "UPDATE events SET actor = 'x'",
            &format!("COPY (SELECT 1) TO '{}'", outside.display()),
            "SET datafusion.execution.batch_size = 1",
            &format!(
                "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '{}'",
                outside.display()
            ),
            "SELECT 1; SELECT 2",
            "SELECT * FROM '/etc/passwd'",
            "SELECT * FROM read_csv('/etc/passwd')",
        ];
        for sql in refused {
            let error = service.query(sql).await.expect_err(sql);
            assert!(
                matches!(error, QueryError::Refused(_) | QueryError::Invalid(_)),
                "{sql}: {error}"
            );
        }
        assert!(!outside.exists(), "COPY must not have written anything");
        let error = service
            .query("DROP VIEW pipeline_runs")
            .await
            .expect_err("refused");
        assert!(error.to_string().contains("read-only"), "{error}");
        // The views are still there.
        service
            .query("SELECT count(*) FROM pipeline_runs")
            .await
            .expect("view intact");
    }

    #[tokio::test]
    async fn results_over_the_row_limit_are_an_error_not_a_silent_cut() {
        let limits = QueryLimits {
            max_rows: 2,
            ..QueryLimits::default()
        };
        let (_dir, service) = empty_lake(limits).await;
        let error = service
            .query("SELECT * FROM (VALUES (1), (2), (3)) AS t(x)")
            .await
            .expect_err("too many rows");
        assert!(matches!(error, QueryError::TooManyRows(2)), "{error}");
        let ok = service
            .query("SELECT * FROM (VALUES (1), (2)) AS t(x)")
            .await
            .expect("within limit");
        assert_eq!(ok.rows, 2);
    }

    #[tokio::test]
    async fn memory_hungry_queries_end_with_a_clear_error() {
        let limits = QueryLimits {
            memory_bytes: 4 * 1024 * 1024,
            ..QueryLimits::default()
        };
        let (_dir, service) = empty_lake(limits).await;
        let error = service
            .query(
                "SELECT v, count(*) FROM (SELECT unnest(range(0, 3000000)) AS v) \
                 GROUP BY v ORDER BY v LIMIT 1",
            )
            .await
            .expect_err("over the memory budget");
        assert!(matches!(error, QueryError::Memory { .. }), "{error}");
        // The service keeps serving.
        service.query("SELECT 1").await.expect("still serving");
    }

    #[tokio::test]
    async fn slow_queries_are_cancelled_at_the_time_limit() {
        let limits = QueryLimits {
            timeout: Duration::from_millis(50),
            ..QueryLimits::default()
        };
        let (_dir, service) = empty_lake(limits).await;
        let error = service
            .query(
                "SELECT sum(a.v * b.v) FROM (SELECT unnest(range(0, 20000)) AS v) a \
                 CROSS JOIN (SELECT unnest(range(0, 20000)) AS v) b",
            )
            .await
            .expect_err("too slow");
        assert!(matches!(error, QueryError::Timeout(_)), "{error}");
    }

    #[tokio::test]
    async fn native_fields_can_be_read_from_raw_json() {
        let (_dir, service) = empty_lake(QueryLimits::default()).await;
        let out = service
            .query(r#"SELECT json_get_str('{"userIdentity": {"type": "IAMUser"}}', 'userIdentity', 'type') AS t"#)
            .await
            .expect("runs");
        let text = render(&out, OutputFormat::Json).expect("renders");
        assert_eq!(text.trim(), r#"[{"t":"IAMUser"}]"#);
    }

    #[tokio::test]
    async fn json_output_is_an_array_of_row_objects_with_lists() {
        let (_dir, service) = empty_lake(QueryLimits::default()).await;
        let out = service
            .query("SELECT 'a' AS name, make_array('x', 'y') AS labels")
            .await
            .expect("runs");
        let text = render(&out, OutputFormat::Json).expect("renders");
        let rows: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            rows,
            serde_json::json!([{"name": "a", "labels": ["x", "y"]}])
        );
    }
}
