//! Arrow results as PostgreSQL rows: each Arrow type maps to one PostgreSQL
//! type, sent in text or binary as the client asked. Types PostgreSQL
//! clients have no direct equivalent for (decimals, intervals, lists,
//! structs, maps) are sent as `text`, printed the way DataFusion prints them.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Float32Array, Float64Array,
    Int16Array, Int32Array, Int64Array, StringArray, Time64MicrosecondArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;

/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01 (Arrow's day 0).
const EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// How a column travels: its PostgreSQL type and the Arrow type it is
/// cast to first, so one encoder per PostgreSQL type is enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    /// Anything else, as DataFusion prints it.
    Printed,
}

impl Kind {
    fn of(data_type: &DataType) -> Kind {
        match data_type {
            DataType::Boolean => Kind::Bool,
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => Kind::Int2,
            DataType::Int32 | DataType::UInt16 => Kind::Int4,
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Kind::Int8,
            DataType::Float16 | DataType::Float32 => Kind::Float4,
            DataType::Float64 => Kind::Float8,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Kind::Text,
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_) => Kind::Bytea,
            DataType::Date32 | DataType::Date64 => Kind::Date,
            DataType::Time32(_) | DataType::Time64(_) => Kind::Time,
            DataType::Timestamp(_, None) => Kind::Timestamp,
            DataType::Timestamp(_, Some(_)) => Kind::TimestampTz,
            DataType::Dictionary(_, value) => Kind::of(value),
            _ => Kind::Printed,
        }
    }

    fn pg_type(self) -> Type {
        match self {
            Kind::Bool => Type::BOOL,
            Kind::Int2 => Type::INT2,
            Kind::Int4 => Type::INT4,
            Kind::Int8 => Type::INT8,
            Kind::Float4 => Type::FLOAT4,
            Kind::Float8 => Type::FLOAT8,
            Kind::Text | Kind::Printed => Type::TEXT,
            Kind::Bytea => Type::BYTEA,
            Kind::Date => Type::DATE,
            Kind::Time => Type::TIME,
            Kind::Timestamp => Type::TIMESTAMP,
            Kind::TimestampTz => Type::TIMESTAMPTZ,
        }
    }

    /// The Arrow type a column is cast to before encoding; `None` keeps it.
    fn arrow_type(self) -> Option<DataType> {
        Some(match self {
            Kind::Bool => DataType::Boolean,
            Kind::Int2 => DataType::Int16,
            Kind::Int4 => DataType::Int32,
            Kind::Int8 => DataType::Int64,
            Kind::Float4 => DataType::Float32,
            Kind::Float8 => DataType::Float64,
            Kind::Text => DataType::Utf8,
            Kind::Bytea => DataType::Binary,
            Kind::Date => DataType::Date32,
            Kind::Time => DataType::Time64(TimeUnit::Microsecond),
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            // Arrow keeps instants in UTC whatever the zone, so relabelling is exact.
            Kind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Printed => return None,
        })
    }
}

/// The format the client asked for column `index`; text when it said nothing
/// about that column.
pub(super) fn format_of(format: &Format, index: usize) -> FieldFormat {
    match format {
        Format::UnifiedText => FieldFormat::Text,
        Format::UnifiedBinary => FieldFormat::Binary,
        Format::Individual(codes) => codes
            .get(index)
            .map_or(FieldFormat::Text, |code| FieldFormat::from(*code)),
    }
}

/// The row description of `schema`.
pub(super) fn fields(schema: &Schema, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(index, field)| {
            FieldInfo::new(
                field.name().clone(),
                None,
                None,
                Kind::of(field.data_type()).pg_type(),
                format_of(format, index),
            )
        })
        .collect()
}

fn encode_error(message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        "22000".to_owned(),
        message,
    )))
}

/// Every row of `batches`, encoded for `fields` (from [`fields`]).
pub(super) fn rows(
    batches: &[RecordBatch],
    fields: &Arc<Vec<FieldInfo>>,
) -> PgWireResult<Vec<DataRow>> {
    let mut rows = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    let print_options = FormatOptions::new().with_null("");
    // Overflow (a UInt64 past i64::MAX) must fail, not turn into NULL.
    let cast_options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let mut encoder = DataRowEncoder::new(fields.clone());
    for batch in batches {
        let columns = batch
            .columns()
            .iter()
            .map(|column| {
                let kind = Kind::of(column.data_type());
                let column = match kind.arrow_type() {
                    Some(to) if &to != column.data_type() => {
                        cast_with_options(column, &to, &cast_options)
                            .map_err(|e| encode_error(e.to_string()))?
                    }
                    _ => column.clone(),
                };
                Ok((kind, column))
            })
            .collect::<PgWireResult<Vec<(Kind, ArrayRef)>>>()?;
        let printers = columns
            .iter()
            .map(|(kind, column)| {
                (*kind == Kind::Printed)
                    .then(|| ArrayFormatter::try_new(column.as_ref(), &print_options))
                    .transpose()
                    .map_err(|e| encode_error(e.to_string()))
            })
            .collect::<PgWireResult<Vec<_>>>()?;
        for row in 0..batch.num_rows() {
            for (((kind, column), printer), field) in
                columns.iter().zip(&printers).zip(fields.iter())
            {
                let cell = Cell {
                    kind: *kind,
                    column,
                    printer: printer.as_ref(),
                    format: field.format(),
                };
                cell.encode(&mut encoder, row)?;
            }
            rows.push(encoder.take_row());
        }
    }
    Ok(rows)
}

/// The value at `row` of `column` as `A`, `None` when null.
fn cell<'a, A: Array + 'static, T>(
    column: &'a ArrayRef,
    row: usize,
    value: impl Fn(&'a A, usize) -> T,
) -> PgWireResult<Option<T>> {
    let typed = column.as_any().downcast_ref::<A>().ok_or_else(|| {
        encode_error(format!(
            "cannot encode a column of type {}",
            column.data_type()
        ))
    })?;
    Ok((!typed.is_null(row)).then(|| value(typed, row)))
}

fn out_of_range(what: &str) -> PgWireError {
    encode_error(format!("{what} out of range for PostgreSQL"))
}

/// PostgreSQL's ISO text of a time of day: the fraction only when there is one.
fn iso_time(time: NaiveTime) -> String {
    let mut text = time.format("%H:%M:%S").to_string();
    let micros = time.nanosecond() / 1_000;
    if micros != 0 {
        text.push_str(format!(".{micros:06}").trim_end_matches('0'));
    }
    text
}

/// PostgreSQL's ISO text of a timestamp, `+00` added for `timestamptz`
/// (sessions are in UTC).
fn iso_timestamp(at: NaiveDateTime, utc: bool) -> String {
    let mut text = format!("{} {}", at.date().format("%Y-%m-%d"), iso_time(at.time()));
    if utc {
        text.push_str("+00");
    }
    text
}

/// One column of a batch, ready to encode row by row.
struct Cell<'a> {
    kind: Kind,
    column: &'a ArrayRef,
    printer: Option<&'a ArrayFormatter<'a>>,
    format: FieldFormat,
}

impl Cell<'_> {
    fn micros(&self, row: usize) -> PgWireResult<Option<DateTime<Utc>>> {
        cell(self.column, row, TimestampMicrosecondArray::value)?
            .map(|micros| {
                DateTime::from_timestamp_micros(micros).ok_or_else(|| out_of_range("timestamp"))
            })
            .transpose()
    }

    fn encode(&self, encoder: &mut DataRowEncoder, row: usize) -> PgWireResult<()> {
        let column = self.column;
        let text = self.format == FieldFormat::Text;
        match self.kind {
            Kind::Bool => encoder.encode_field(&cell(column, row, BooleanArray::value)?),
            Kind::Int2 => encoder.encode_field(&cell(column, row, Int16Array::value)?),
            Kind::Int4 => encoder.encode_field(&cell(column, row, Int32Array::value)?),
            Kind::Int8 => encoder.encode_field(&cell(column, row, Int64Array::value)?),
            Kind::Float4 => encoder.encode_field(&cell(column, row, Float32Array::value)?),
            Kind::Float8 => encoder.encode_field(&cell(column, row, Float64Array::value)?),
            Kind::Text => encoder.encode_field(&cell(column, row, StringArray::value)?),
            Kind::Bytea => encoder.encode_field(&cell(column, row, BinaryArray::value)?),
            Kind::Date => {
                let date = cell(column, row, Date32Array::value)?
                    .map(|days| {
                        days.checked_add(EPOCH_DAYS_FROM_CE)
                            .and_then(NaiveDate::from_num_days_from_ce_opt)
                            .ok_or_else(|| out_of_range("date"))
                    })
                    .transpose()?;
                encoder.encode_field(&date)
            }
            Kind::Time => {
                let time = cell(column, row, Time64MicrosecondArray::value)?
                    .map(|micros| {
                        let seconds = u32::try_from(micros.div_euclid(1_000_000));
                        let nanos = u32::try_from(micros.rem_euclid(1_000_000) * 1_000);
                        match (seconds, nanos) {
                            (Ok(s), Ok(n)) => NaiveTime::from_num_seconds_from_midnight_opt(s, n),
                            _ => None,
                        }
                        .ok_or_else(|| out_of_range("time"))
                    })
                    .transpose()?;
                if text {
                    encoder.encode_field(&time.map(iso_time))
                } else {
                    encoder.encode_field(&time)
                }
            }
            Kind::Timestamp => {
                let at: Option<NaiveDateTime> = self.micros(row)?.map(|t| t.naive_utc());
                if text {
                    encoder.encode_field(&at.map(|t| iso_timestamp(t, false)))
                } else {
                    encoder.encode_field(&at)
                }
            }
            Kind::TimestampTz => {
                let at = self.micros(row)?;
                if text {
                    encoder.encode_field(&at.map(|t| iso_timestamp(t.naive_utc(), true)))
                } else {
                    encoder.encode_field(&at)
                }
            }
            Kind::Printed => {
                let printed = match self.printer {
                    Some(printer) if !column.is_null(row) => Some(printer.value(row).to_string()),
                    _ => None,
                };
                encoder.encode_field(&printed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ListArray, UInt64Array};
    use datafusion::arrow::datatypes::{Field, Int32Type};

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).expect("batch")
    }

    #[test]
    fn arrow_types_map_to_postgres_types() {
        let cases = [
            (DataType::Boolean, Type::BOOL),
            (DataType::UInt8, Type::INT2),
            (DataType::Int32, Type::INT4),
            (DataType::UInt64, Type::INT8),
            (DataType::Float64, Type::FLOAT8),
            (DataType::Utf8View, Type::TEXT),
            (DataType::BinaryView, Type::BYTEA),
            (DataType::Date64, Type::DATE),
            (DataType::Time32(TimeUnit::Second), Type::TIME),
            (
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                Type::TIMESTAMP,
            ),
            (
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                Type::TIMESTAMPTZ,
            ),
            (
                DataType::Dictionary(Box::new(DataType::UInt16), Box::new(DataType::Utf8)),
                Type::TEXT,
            ),
            (DataType::Decimal128(10, 2), Type::TEXT),
            (
                DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
                Type::TEXT,
            ),
        ];
        for (arrow, postgres) in cases {
            assert_eq!(Kind::of(&arrow).pg_type(), postgres, "{arrow}");
        }
    }

    #[test]
    fn rows_encode_in_text_and_binary_and_overflow_is_an_error() {
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
        ]);
        let batch = batch(vec![
            (
                "n",
                Arc::new(Int64Array::from(vec![Some(42), None])) as ArrayRef,
            ),
            ("s", Arc::new(StringArray::from(vec!["a", "b"]))),
            ("l", Arc::new(list)),
            (
                "t",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(0), Some(1_500_000)])
                        .with_timezone("UTC"),
                ),
            ),
        ]);
        for format in [Format::UnifiedText, Format::UnifiedBinary] {
            let fields = Arc::new(fields(&batch.schema(), &format));
            let rows = rows(std::slice::from_ref(&batch), &fields).expect("encodes");
            assert_eq!(rows.len(), 2);
        }
        let fields = Arc::new(fields(&batch.schema(), &Format::UnifiedText));
        assert_eq!(fields[2].datatype(), &Type::TEXT);
        assert_eq!(fields[3].datatype(), &Type::TIMESTAMPTZ);

        let huge = batch_of_u64(u64::MAX);
        let fields = Arc::new(fields_of(&huge));
        let error = rows(&[huge], &fields).expect_err("overflow");
        assert!(error.to_string().contains("Int64"), "{error}");
    }

    fn batch_of_u64(value: u64) -> RecordBatch {
        batch(vec![(
            "u",
            Arc::new(UInt64Array::from(vec![value])) as ArrayRef,
        )])
    }

    fn fields_of(batch: &RecordBatch) -> Vec<FieldInfo> {
        fields(&batch.schema(), &Format::UnifiedText)
    }

    #[test]
    fn times_print_as_postgres_prints_them() {
        let at = DateTime::from_timestamp_micros(1_714_564_800_250_000)
            .expect("instant")
            .naive_utc();
        assert_eq!(iso_timestamp(at, true), "2024-05-01 12:00:00.25+00");
        assert_eq!(
            iso_timestamp(at.with_nanosecond(0).expect("whole"), false),
            "2024-05-01 12:00:00"
        );
        let time = NaiveTime::from_hms_micro_opt(7, 5, 3, 120).expect("time");
        assert_eq!(iso_time(time), "07:05:03.00012");
    }

    #[test]
    fn a_short_format_list_means_text_for_the_rest() {
        let format = Format::Individual(vec![1]);
        assert_eq!(format_of(&format, 0), FieldFormat::Binary);
        assert_eq!(format_of(&format, 5), FieldFormat::Text);
    }
}
