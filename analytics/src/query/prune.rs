//! Partition pruning by time: the lake files events under the UTC date of
//! their `event_time`, so a bound on `event_time` implies the same bound on
//! the `date` partition. This rule adds that implied `date` bound to every
//! scan of the events table, and the listing skips other days' files
//! without opening them.

use chrono::{DateTime, Utc};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator, lit};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use pipewatch_schema::tables::EVENTS;

/// Adds `date` bounds implied by `event_time` bounds to scans of `events`.
#[derive(Debug, Default)]
pub(super) struct DatePartitionPruning;

impl DatePartitionPruning {
    pub(super) const NAME: &'static str = "pipewatch_date_partition_pruning";
}

impl OptimizerRule for DatePartitionPruning {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_up(|node| {
            let LogicalPlan::TableScan(mut scan) = node else {
                return Ok(Transformed::no(node));
            };
            if scan.table_name.table() != EVENTS {
                return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
            }
            let implied: Vec<Expr> = scan
                .filters
                .iter()
                .flat_map(|f| {
                    split_conjunction(f)
                        .into_iter()
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .filter_map(|e| implied_date_bound(&e, &scan.table_name))
                .filter(|bound| !scan.filters.contains(bound))
                .collect();
            if implied.is_empty() {
                return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
            }
            scan.filters.extend(implied);
            Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
        })
    }
}

/// `date >= 'D'` for `event_time >= t` (or `>`), `date <= 'D'` for
/// `event_time <= t` (or `<`), where D is t's UTC date; literal on either side.
fn implied_date_bound(expr: &Expr, table: &datafusion::common::TableReference) -> Option<Expr> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
        return None;
    };
    let (time, op) = match (is_event_time(left), is_event_time(right)) {
        (true, false) => (timestamp_micros(right)?, *op),
        (false, true) => (timestamp_micros(left)?, op.swap()?),
        _ => return None,
    };
    let date = DateTime::<Utc>::from_timestamp_micros(time)?
        .format("%Y-%m-%d")
        .to_string();
    let column = Expr::Column(Column::new(Some(table.clone()), "date"));
    match op {
        Operator::Gt | Operator::GtEq => Some(column.gt_eq(lit(date))),
        Operator::Lt | Operator::LtEq => Some(column.lt_eq(lit(date))),
        Operator::Eq => Some(column.eq(lit(date))),
        _ => None,
    }
}

fn is_event_time(expr: &Expr) -> bool {
    match expr {
        Expr::Column(c) => c.name == "event_time",
        // A cast to another timestamp unit or zone keeps the instant.
        Expr::Cast(cast) => {
            matches!(
                cast.field.data_type(),
                datafusion::arrow::datatypes::DataType::Timestamp(_, _)
            ) && is_event_time(&cast.expr)
        }
        _ => false,
    }
}

/// The instant of a timestamp literal, in microseconds since the epoch
/// (a zoneless literal is read as UTC, as the session's zone is UTC).
fn timestamp_micros(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    match value {
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1_000)),
        _ => None,
    }
}
