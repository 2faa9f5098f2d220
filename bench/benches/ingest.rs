//! Decode-and-write throughput: the generated organisation's native files
//! decoded, redacted and committed to a fresh Parquet lake, on one thread.
//! Criterion reports events/s (elements) and MB/s (bytes) per core.

use std::path::Path;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pipewatch_bench::Corpus;
use pipewatch_ingest::{IngestSummary, Ingestor, Input};

fn ingest_all(corpus: &Corpus, lake: &Path) -> IngestSummary {
    // One decoding thread: the figures are per core.
    let mut ingestor = Ingestor::open(lake)
        .expect("ingestor")
        .with_decode_threads(1);
    for file in &corpus.files {
        ingestor
            .ingest(None, &Input::new(&file.origin, &file.bytes))
            .expect("ingest");
    }
    ingestor.finish().expect("finish")
}

/// Decoding alone (no redaction, no Parquet), per format, to see where time goes.
fn decode_corpus(c: &mut Criterion, corpus: &Corpus) {
    let mut group = c.benchmark_group("decode_only");
    group.sample_size(10);
    let mut by_format: std::collections::BTreeMap<&'static str, Vec<&pipewatch_bench::CorpusFile>> =
        Default::default();
    for file in &corpus.files {
        let name = pipewatch_ingest::decoders::detect(&file.bytes).map_or("unknown", |f| f.name());
        by_format.entry(name).or_default().push(file);
    }
    for (format, files) in by_format {
        let bytes: u64 = files.iter().map(|f| f.bytes.len() as u64).sum();
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(format, |b| {
            b.iter(|| {
                files
                    .iter()
                    .map(|f| {
                        pipewatch_ingest::decoders::decode(None, &Input::new(&f.origin, &f.bytes))
                            .1
                            .events
                            .len()
                    })
                    .sum::<usize>()
            });
        });
    }
    group.finish();
}

fn ingest_corpus(c: &mut Criterion) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let corpus = Corpus::generate(scratch.path(), 2).expect("corpus");
    let count_dir = tempfile::tempdir().expect("count dir");
    let events = ingest_all(&corpus, count_dir.path()).total().accepted as u64;
    decode_corpus(c, &corpus);

    let mut group = c.benchmark_group("decode_redact_write");
    group.sample_size(10);
    for (name, throughput) in [
        ("events", Throughput::Elements(events)),
        ("bytes", Throughput::Bytes(corpus.bytes)),
    ] {
        group.throughput(throughput);
        group.bench_function(name, |b| {
            b.iter_batched(
                || tempfile::tempdir().expect("lake dir"),
                |lake| ingest_all(&corpus, lake.path()),
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, ingest_corpus);
criterion_main!(benches);
