//! Text as string views inside a query, plain UTF-8 outside it: scans
//! read the lake's text columns as views, and answers are handed back
//! with every view turned into the plain string type the schema declares.

use std::sync::Arc;

use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

/// The lake's file schema with its text columns as string views. Reading
/// a view points into the page's dictionary or values instead of copying
/// each string into a fresh buffer.
pub(super) fn scan_schema() -> SchemaRef {
    with_types(
        &pipewatch_schema::file_schema(),
        |data_type| match data_type {
            DataType::Utf8 => DataType::Utf8View,
            other => other.clone(),
        },
    )
}

/// `schema` with every string or binary view, at any depth, in its plain
/// form: what readers of answers (the SQL endpoint, the dashboard, the
/// detectors) are written against.
pub(super) fn plain_schema(schema: &SchemaRef) -> SchemaRef {
    if !schema.fields().iter().any(|f| has_views(f.data_type())) {
        return schema.clone();
    }
    with_types(schema, plain)
}

/// `schema` with each field's type replaced by `map` of it.
fn with_types(schema: &SchemaRef, map: impl Fn(&DataType) -> DataType) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(map(f.data_type())))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` with its views in their plain form (see [`plain_schema`]).
pub(super) fn plain_batch(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let plain = plain_schema(batch.schema_ref());
    if Arc::ptr_eq(&plain, batch.schema_ref()) {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(plain.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(plain, columns)
}

fn has_views(data_type: &DataType) -> bool {
    plain(data_type) != *data_type
}

fn plain(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(item) => DataType::List(plain_field(item)),
        DataType::LargeList(item) => DataType::LargeList(plain_field(item)),
        DataType::FixedSizeList(item, size) => DataType::FixedSizeList(plain_field(item), *size),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(plain_field).collect::<Fields>())
        }
        other => other.clone(),
    }
}

fn plain_field(field: &Arc<Field>) -> Arc<Field> {
    Arc::new(
        field
            .as_ref()
            .clone()
            .with_data_type(plain(field.data_type())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray, ListArray, StringViewArray};
    use datafusion::arrow::datatypes::Int32Type;

    #[test]
    fn every_text_column_of_the_lake_is_scanned_as_views() {
        let file = pipewatch_schema::file_schema();
        let scan = scan_schema();
        assert_eq!(file.fields().len(), scan.fields().len());
        for (f, s) in file.fields().iter().zip(scan.fields()) {
            assert_eq!(f.name(), s.name());
            assert_eq!(f.is_nullable(), s.is_nullable());
            match f.data_type() {
                DataType::Utf8 => assert_eq!(s.data_type(), &DataType::Utf8View, "{}", f.name()),
                other => assert_eq!(s.data_type(), other, "{}", f.name()),
            }
        }
        assert_eq!(plain_schema(&scan), file);
    }

    #[test]
    fn answers_come_back_as_plain_strings_at_any_depth() {
        let names: Arc<dyn Array> = Arc::new(StringViewArray::from(vec![
            Some("a fairly long actor name past twelve bytes"),
            None,
            Some("bob"),
        ]));
        let mut lists = datafusion::arrow::array::ListBuilder::new(
            datafusion::arrow::array::StringViewBuilder::new(),
        );
        lists.append_value([Some("x"), None]);
        lists.append_null();
        lists.append_value([Some("a value longer than twelve bytes")]);
        let lists: ListArray = lists.finish();
        let counts: Arc<dyn Array> =
            Arc::new(datafusion::arrow::array::Int32Array::from(vec![1, 2, 3]));
        let batch = RecordBatch::try_from_iter(vec![
            ("name", names),
            ("seen", Arc::new(lists) as Arc<dyn Array>),
            ("n", counts),
        ])
        .expect("batch");

        let out = plain_batch(batch).expect("plain batch");
        assert_eq!(out.schema(), plain_schema(&out.schema()));

        let name = out.column(0).as_string::<i32>();
        assert_eq!(name.value(0), "a fairly long actor name past twelve bytes");
        assert!(name.is_null(1));
        assert_eq!(name.value(2), "bob");
        let seen = out.column(1).as_list::<i32>();
        assert!(seen.is_null(1));
        let last = seen.value(2);
        assert_eq!(
            last.as_string::<i32>().value(0),
            "a value longer than twelve bytes"
        );
        assert_eq!(out.column(2).as_primitive::<Int32Type>().value(2), 3);
    }
}
