//! Rendering results for people and scripts: an aligned table, CSV, or a
//! JSON array of row objects (lists stay JSON arrays).

use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::json::ArrayWriter;
use datafusion::arrow::util::pretty::pretty_format_batches;

use super::{QueryError, QueryOutput};

/// How a result is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Table,
    Csv,
    Json,
}

/// Renders a result as text.
pub fn render(output: &QueryOutput, format: OutputFormat) -> Result<String, QueryError> {
    let failed = |e: datafusion::arrow::error::ArrowError| QueryError::Execution(e.to_string());
    match format {
        OutputFormat::Table => {
            if output.rows == 0 {
                let names: Vec<&str> = output
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                return Ok(format!("{}\n(0 rows)", names.join(" | ")));
            }
            let table = pretty_format_batches(&output.batches).map_err(failed)?;
            Ok(format!("{table}\n({} rows)", output.rows))
        }
        OutputFormat::Csv => {
            let mut buffer = Vec::new();
            {
                let mut writer = WriterBuilder::new().with_header(true).build(&mut buffer);
                if output.batches.is_empty() {
                    let empty = datafusion::arrow::record_batch::RecordBatch::new_empty(
                        output.schema.clone(),
                    );
                    writer.write(&empty).map_err(failed)?;
                }
                for batch in &output.batches {
                    writer.write(batch).map_err(failed)?;
                }
            }
            String::from_utf8(buffer).map_err(|e| QueryError::Execution(e.to_string()))
        }
        OutputFormat::Json => {
            let mut buffer = Vec::new();
            {
                let mut writer = ArrayWriter::new(&mut buffer);
                for batch in &output.batches {
                    writer.write(batch).map_err(failed)?;
                }
                writer.finish().map_err(failed)?;
            }
            if buffer.is_empty() {
                return Ok("[]".to_owned());
            }
            String::from_utf8(buffer).map_err(|e| QueryError::Execution(e.to_string()))
        }
    }
}
