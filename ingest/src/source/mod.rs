//! Where native inputs come from. Files and standard input for now; the
//! long-running sources (HTTP, Kafka, OTLP) join this folder.

pub mod file;
