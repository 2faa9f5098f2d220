//! Statements over the PostgreSQL protocol, simple and extended: driver
//! session statements answered locally (see the module above), everything
//! else through [`QueryService::query`](pipewatch_analytics::QueryService::query),
//! audited, its errors sent back with their SQLSTATE.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use datafusion::sql::sqlparser::ast::{Ident, Set, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use futures::sink::Sink;
use futures::stream;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DataRowEncoder, DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse,
    Response, Tag,
};
use pgwire::api::stmt::{NoopQueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pipewatch_analytics::{QueryError, QueryOutput};

use super::{SERVER_VERSION, Session, Shared, encode};

/// Statements longer than this are clipped in the audit log.
const AUDITED_SQL_CHARS: usize = 2000;

/// psql's `\d` commands and GUI schema browsers read `pg_catalog`, which
/// pipewatch does not emulate.
const PG_CATALOG_HINT: &str = "pipewatch has no pg_catalog, so psql's \\d commands do not work \
                               here: use SHOW TABLES, SHOW COLUMNS FROM <table> or \
                               information_schema.columns";

/// A statement answered without running anything.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Local {
    Set,
    Show {
        name: &'static str,
        value: &'static str,
    },
    Begin,
    Commit,
    Rollback,
}

/// What a statement answered.
#[derive(Debug, Clone)]
enum Answer {
    Rows(Arc<QueryOutput>),
    Local(Local),
}

fn error(severity: &str, code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.to_owned(),
        code.to_owned(),
        message,
    )))
}

/// The SQLSTATE of a query error, as PostgreSQL would have classed it.
fn sqlstate(e: &QueryError) -> &'static str {
    match e {
        QueryError::Refused(_) => "42501",
        QueryError::Invalid(text) if text.contains("not found") && text.contains("table") => {
            "42P01"
        }
        QueryError::Invalid(text) if text.contains("No field named") => "42703",
        QueryError::Invalid(_) => "42601",
        QueryError::Memory { .. } => "53200",
        QueryError::TooManyRows(_) => "53000",
        QueryError::Timeout(_) => "57014",
        QueryError::Lake { .. } => "58000",
        QueryError::Execution(_) => "22000",
    }
}

fn clip(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn unquote(text: &str) -> String {
    text.trim()
        .trim_matches(|c| c == '\'' || c == '"')
        .to_ascii_lowercase()
}

/// The driver session statements answered as no-ops; see the module docs.
fn local_answer(sql: &str) -> Option<Local> {
    let keyword = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()?
        .to_ascii_lowercase();
    if !matches!(
        keyword.as_str(),
        "set" | "show" | "begin" | "start" | "commit" | "end" | "rollback" | "abort"
    ) {
        return None;
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    if statements.len() != 1 {
        return None;
    }
    match statements.pop()? {
        Statement::Set(Set::SingleAssignment {
            variable, values, ..
        }) => {
            let value = values
                .iter()
                .map(|v| unquote(&v.to_string()))
                .collect::<Vec<_>>()
                .join(",");
            harmless_setting(&unquote(&variable.to_string()), &value).then_some(Local::Set)
        }
        Statement::Set(Set::SetTimeZone { value, .. }) => {
            is_utc(&unquote(&value.to_string())).then_some(Local::Set)
        }
        Statement::ShowVariable { variable } => shown(&variable),
        Statement::StartTransaction { .. } => Some(Local::Begin),
        Statement::Commit { .. } => Some(Local::Commit),
        Statement::Rollback {
            savepoint: None, ..
        } => Some(Local::Rollback),
        _ => None,
    }
}

fn is_utc(zone: &str) -> bool {
    matches!(zone, "utc" | "etc/utc" | "gmt" | "z" | "zulu")
}

/// Settings that change nothing pipewatch sends, or only confirm what it does.
fn harmless_setting(name: &str, value: &str) -> bool {
    match name {
        "application_name" | "extra_float_digits" | "client_min_messages" => true,
        "client_encoding" => matches!(value, "utf8" | "utf-8" | "unicode"),
        "datestyle" => value.starts_with("iso"),
        "intervalstyle" => value == "postgres",
        "timezone" => is_utc(value),
        "search_path" => matches!(value.replace(' ', "").as_str(), "public" | "$user,public"),
        _ => false,
    }
}

fn shown(variable: &[Ident]) -> Option<Local> {
    let name = variable
        .iter()
        .map(|part| part.value.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    let (name, value) = match name.as_str() {
        "transaction isolation level" | "transaction_isolation" => {
            ("transaction_isolation", "read committed")
        }
        "transaction_read_only" => ("transaction_read_only", "on"),
        "default_transaction_read_only" => ("default_transaction_read_only", "on"),
        "search_path" => ("search_path", "public"),
        "server_version" => ("server_version", SERVER_VERSION),
        "server_encoding" => ("server_encoding", "UTF8"),
        "client_encoding" => ("client_encoding", "UTF8"),
        "standard_conforming_strings" => ("standard_conforming_strings", "on"),
        "timezone" | "time zone" => ("TimeZone", "UTC"),
        "datestyle" => ("DateStyle", "ISO, MDY"),
        "integer_datetimes" => ("integer_datetimes", "on"),
        "max_identifier_length" => ("max_identifier_length", "63"),
        _ => return None,
    };
    Some(Local::Show { name, value })
}

impl Answer {
    /// The row description, in the formats the client asked for.
    fn fields(&self, format: &Format) -> Vec<FieldInfo> {
        match self {
            Answer::Rows(output) => encode::fields(&output.schema, format),
            Answer::Local(Local::Show { name, .. }) => vec![FieldInfo::new(
                (*name).to_owned(),
                None,
                None,
                Type::TEXT,
                encode::format_of(format, 0),
            )],
            Answer::Local(_) => Vec::new(),
        }
    }

    async fn into_response(self, format: &Format) -> PgWireResult<Response> {
        let fields = Arc::new(self.fields(format));
        match self {
            Answer::Rows(output) => {
                let encoded_fields = fields.clone();
                // Encoding up to `max_rows` rows is CPU work: keep it off the async threads.
                let rows = tokio::task::spawn_blocking(move || {
                    encode::rows(&output.batches, &encoded_fields)
                })
                .await
                .map_err(|e| error("ERROR", "XX000", format!("encoding failed: {e}")))??;
                Ok(Response::Query(QueryResponse::new(
                    fields,
                    stream::iter(rows.into_iter().map(Ok)),
                )))
            }
            Answer::Local(Local::Show { value, .. }) => {
                let mut encoder = DataRowEncoder::new(fields.clone());
                encoder.encode_field(&value)?;
                let row = encoder.take_row();
                let mut response = QueryResponse::new(fields, stream::iter([Ok(row)]));
                response.set_command_tag("SHOW");
                Ok(Response::Query(response))
            }
            Answer::Local(Local::Set) => Ok(Response::Execution(Tag::new("SET"))),
            Answer::Local(Local::Begin) => Ok(Response::TransactionStart(Tag::new("BEGIN"))),
            Answer::Local(Local::Commit) => Ok(Response::TransactionEnd(Tag::new("COMMIT"))),
            Answer::Local(Local::Rollback) => Ok(Response::TransactionEnd(Tag::new("ROLLBACK"))),
        }
    }
}

impl Shared {
    /// Answers one statement for `session`, auditing it.
    async fn answer(self: &Arc<Self>, session: &Session, sql: &str) -> PgWireResult<Answer> {
        let statement = clip(sql.trim(), AUDITED_SQL_CHARS);
        if let Some(local) = local_answer(sql) {
            self.audit(
                &session.user,
                &session.address,
                "sql",
                Some(statement),
                "ok",
                Some("session statement answered without running (pgwire)".to_owned()),
            )
            .await;
            return Ok(Answer::Local(local));
        }
        if has_placeholders(sql) {
            self.audit(
                &session.user,
                &session.address,
                "sql",
                Some(statement),
                "refused",
                Some(NO_PARAMETERS.to_owned()),
            )
            .await;
            return Err(error("ERROR", "0A000", NO_PARAMETERS.to_owned()));
        }
        let started = Instant::now();
        let mut running = Running::new(self, session, &statement);
        let result = match self.lake_for(session.role).await {
            Ok(lake) => lake.query(sql).await,
            Err(e) => Err(e),
        };
        running.finished();
        let elapsed = started.elapsed().as_millis();
        let (outcome, detail) = match &result {
            Ok(output) => (
                "ok",
                format!("{} rows in {elapsed} ms (pgwire)", output.rows),
            ),
            Err(e @ QueryError::Refused(_)) => ("refused", e.to_string()),
            Err(e) => ("failed", e.to_string()),
        };
        self.audit(
            &session.user,
            &session.address,
            "sql",
            Some(statement),
            outcome,
            Some(detail),
        )
        .await;
        match result {
            Ok(output) => Ok(Answer::Rows(Arc::new(output))),
            Err(e) => {
                let mut info =
                    ErrorInfo::new("ERROR".to_owned(), sqlstate(&e).to_owned(), e.to_string());
                if matches!(&e, QueryError::Invalid(text) if text.contains("pg_catalog")) {
                    info.hint = Some(PG_CATALOG_HINT.to_owned());
                }
                Err(PgWireError::UserError(Box::new(info)))
            }
        }
    }
}

/// A statement between its start and its audit entry. A cancel request
/// drops the query's future midway; the entry is then written from here.
struct Running(Option<(Arc<Shared>, String, String, String)>);

impl Running {
    fn new(shared: &Arc<Shared>, session: &Session, statement: &str) -> Self {
        Running(Some((
            shared.clone(),
            session.user.clone(),
            session.address.clone(),
            statement.to_owned(),
        )))
    }

    fn finished(&mut self) {
        self.0 = None;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some((shared, user, address, statement)) = self.0.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                shared
                    .audit(
                        &user,
                        &address,
                        "sql",
                        Some(statement),
                        "failed",
                        Some("cancelled by the client (pgwire)".to_owned()),
                    )
                    .await;
            });
        }
    }
}

fn session_of(client: &impl ClientInfo) -> PgWireResult<Arc<Session>> {
    client
        .session_extensions()
        .get::<Session>()
        .ok_or_else(|| error("FATAL", "28000", "not signed in".to_owned()))
}

/// The answer of the last statement described on a connection, kept for
/// the `Execute` that follows: the extended protocol asks for the columns
/// before running, and only running a statement tells them.
#[derive(Debug, Default)]
struct Described(Mutex<Option<(String, Answer)>>);

impl Described {
    fn keep(client: &impl ClientInfo, sql: &str, answer: Answer) {
        let described = client
            .session_extensions()
            .get_or_insert_with(Self::default);
        *super::lock(&described.0) = Some((sql.to_owned(), answer));
    }

    fn take(client: &impl ClientInfo, sql: &str) -> Option<Answer> {
        let described = client.session_extensions().get::<Self>()?;
        let kept = super::lock(&described.0).take()?;
        (kept.0 == sql).then_some(kept.1)
    }
}

const NO_PARAMETERS: &str = "query parameters ($1, …) are not supported: pipewatch runs each \
                             statement as written, so put the values in the SQL";

/// Whether `sql` has `$1`-style placeholders (outside strings and comments).
fn has_placeholders(sql: &str) -> bool {
    Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .is_ok_and(|tokens| tokens.iter().any(|t| matches!(t, Token::Placeholder(_))))
}

fn refuse_parameters(portal: &Portal<String>) -> PgWireResult<()> {
    if portal.parameter_len() > 0 {
        return Err(error("ERROR", "0A000", NO_PARAMETERS.to_owned()));
    }
    Ok(())
}

/// The query handlers of every connection.
pub(super) struct Queries {
    shared: Arc<Shared>,
    parser: Arc<NoopQueryParser>,
}

impl Queries {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Queries {
            shared,
            parser: Arc::new(NoopQueryParser::new()),
        }
    }

    async fn describe(
        &self,
        client: &impl ClientInfo,
        sql: &str,
        format: &Format,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let session = session_of(client)?;
        let answer = self.shared.answer(&session, sql).await?;
        let fields = answer.fields(format);
        Described::keep(client, sql, answer);
        Ok(fields)
    }
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client)?;
        let answer = self.shared.answer(&session, query).await?;
        Ok(vec![answer.into_response(&Format::UnifiedText).await?])
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = String;
    type QueryParser = NoopQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        target: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let fields = self
            .describe(client, &target.statement, &Format::UnifiedText)
            .await?;
        Ok(DescribeStatementResponse::new(Vec::new(), fields))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        refuse_parameters(portal)?;
        let fields = self
            .describe(
                client,
                &portal.statement.statement,
                &portal.result_column_format,
            )
            .await?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        refuse_parameters(portal)?;
        let sql = &portal.statement.statement;
        let answer = match Described::take(client, sql) {
            Some(answer) => answer,
            None => {
                let session = session_of(client)?;
                self.shared.answer(&session, sql).await?
            }
        };
        answer.into_response(&portal.result_column_format).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_session_statements_are_answered_locally_and_others_are_not() {
        for sql in [
            "SET extra_float_digits = 3",
            "set application_name = 'PostgreSQL JDBC Driver'",
            "SET client_encoding TO 'UTF8'",
            "SET DateStyle = 'ISO, MDY'",
            "SET TIME ZONE 'UTC'",
            "SET search_path = \"$user\", public",
        ] {
            assert_eq!(local_answer(sql), Some(Local::Set), "{sql}");
        }
        assert_eq!(
            local_answer("SHOW TRANSACTION ISOLATION LEVEL"),
            Some(Local::Show {
                name: "transaction_isolation",
                value: "read committed"
            })
        );
        assert!(matches!(
            local_answer("show server_version;"),
            Some(Local::Show { .. })
        ));
        assert_eq!(local_answer("BEGIN"), Some(Local::Begin));
        assert_eq!(local_answer("commit"), Some(Local::Commit));
        assert_eq!(local_answer("ROLLBACK"), Some(Local::Rollback));
        for sql in [
            "SET datafusion.execution.batch_size = 1",
            "SET client_encoding = 'LATIN1'",
            "SET TIME ZONE 'Europe/Paris'",
            "SET search_path = other",
            "SET application_name = 'x'; DROP TABLE events",
            "SHOW ALL",
            "SHOW datafusion.execution.batch_size",
            "ROLLBACK TO SAVEPOINT s",
            "SELECT 1",
            "settle",
        ] {
            assert_eq!(local_answer(sql), None, "{sql}");
        }
    }

    #[test]
    fn query_errors_carry_postgres_sqlstates() {
        let cases = [
            (QueryError::Refused("no".into()), "42501"),
            (
                QueryError::Invalid("Error during planning: table 'x' not found".into()),
                "42P01",
            ),
            (QueryError::Invalid("sql parser error".into()), "42601"),
            (QueryError::TooManyRows(5), "53000"),
            (
                QueryError::Timeout(std::time::Duration::from_secs(1)),
                "57014",
            ),
        ];
        for (e, code) in cases {
            assert_eq!(sqlstate(&e), code, "{e}");
        }
        assert_eq!(clip("ééé", 2), "éé…");
        assert!(has_placeholders("SELECT * FROM alerts WHERE entity = $1"));
        assert!(!has_placeholders("SELECT '$1' AS price -- $2"));
    }
}
