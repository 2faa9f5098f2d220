//! The read-only guard: one statement, a query (or EXPLAIN of one, or
//! SHOW TABLES/COLUMNS), reading only pipewatch's own tables. DDL, DML,
//! COPY, SET, external tables, file and URL table functions are refused
//! before anything runs.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use pipewatch_schema::tables::{ALERTS, CATEGORY_VIEWS, DEAD_LETTERS, EVENTS, NOTIFICATIONS};

use super::QueryError;

/// The tables and views a query may read.
pub fn allowed_tables() -> Vec<&'static str> {
    [EVENTS, DEAD_LETTERS, ALERTS, NOTIFICATIONS]
        .into_iter()
        .chain(CATEGORY_VIEWS.iter().map(|v| v.name))
        .collect()
}

fn refuse(what: &str) -> QueryError {
    QueryError::Refused(format!(
        "{what} is not allowed: pipewatch SQL is read-only (SELECT, WITH, EXPLAIN, SHOW TABLES)"
    ))
}

fn check_statement(statement: &DfStatement) -> Result<(), QueryError> {
    match statement {
        DfStatement::Statement(inner) => match inner.as_ref() {
            SqlStatement::Query(_) => Ok(()),
            SqlStatement::ShowTables { .. } | SqlStatement::ShowColumns { .. } => Ok(()),
            SqlStatement::Explain { statement, .. } => match statement.as_ref() {
                SqlStatement::Query(_) => Ok(()),
                _ => Err(refuse("EXPLAIN of anything but a query")),
            },
            SqlStatement::Set(_) => Err(refuse("SET")),
            SqlStatement::Copy { .. } => Err(refuse("COPY")),
            SqlStatement::Insert(_)
            | SqlStatement::Update { .. }
            | SqlStatement::Delete(_)
            | SqlStatement::Merge { .. }
            | SqlStatement::Truncate { .. } => Err(refuse("changing data (DML)")),
            other => {
                let text = other.to_string();
                let keyword = text.split_whitespace().next().unwrap_or("this statement");
                Err(refuse(&keyword.to_ascii_uppercase()))
            }
        },
        DfStatement::CreateExternalTable(_) => Err(refuse("CREATE EXTERNAL TABLE")),
        DfStatement::CopyTo(_) => Err(refuse("COPY")),
        DfStatement::Reset(_) => Err(refuse("RESET")),
        DfStatement::Explain(explain) => check_statement(&explain.statement),
    }
}

/// Parses, checks and plans `sql`. Nothing is executed.
pub(crate) async fn plan_read_only(
    ctx: &SessionContext,
    sql: &str,
    extra_tables: &[String],
) -> Result<LogicalPlan, QueryError> {
    let mut statements = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})
        .map_err(|e| QueryError::Invalid(e.to_string()))?;
    if statements.len() != 1 {
        return Err(QueryError::Refused(format!(
            "exactly one statement per query, got {}",
            statements.len()
        )));
    }
    let Some(statement) = statements.pop_front() else {
        return Err(QueryError::Invalid("empty query".into()));
    };
    check_statement(&statement)?;
    let plan = ctx
        .state()
        .statement_to_plan(statement)
        .await
        .map_err(|e| QueryError::Invalid(e.to_string()))?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| QueryError::Refused(e.to_string()))?;
    check_tables(&plan, extra_tables)?;
    Ok(plan)
}

/// Every table a plan scans must be one of ours (or the information schema),
/// so no file, URL or foreign table can be read through a function or path.
fn check_tables(plan: &LogicalPlan, extra_tables: &[String]) -> Result<(), QueryError> {
    let mut allowed: Vec<&str> = allowed_tables();
    allowed.extend(extra_tables.iter().map(String::as_str));
    let mut refused = None;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let name = scan.table_name.table();
            let schema_ok = scan
                .table_name
                .schema()
                .is_none_or(|s| s == "public" || s == "information_schema");
            let ok = schema_ok
                && (allowed.contains(&name)
                    || scan.table_name.schema() == Some("information_schema"));
            if !ok {
                refused = Some(scan.table_name.to_string());
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(|e| QueryError::Invalid(e.to_string()))?;
    match refused {
        Some(table) => Err(QueryError::Refused(format!(
            "reading `{table}` is not allowed; tables: {}",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}
