//! criterion benches of the append, commit and read paths. `cargo bench -p rwal-benches` runs
//! them in a few minutes; `rwal bench` is the fuller, percentile-oriented benchmark.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rwal_benches::BenchLog;
use rwal_wal::Backend;

fn backends() -> [(&'static str, Backend); 3] {
    [
        ("staged", Backend::Staged),
        ("mmap", Backend::Mmap),
        ("pwrite", Backend::Pwrite),
    ]
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    for (name, backend) in backends() {
        for size in [128usize, 4096] {
            let log = BenchLog::new(&format!("append-{name}-{size}"), backend.clone());
            let data = vec![7u8; size];
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(format!("{name}/{size}B"), |b| {
                b.iter(|| log.wal().append(&data).expect("append"))
            });
        }
        let log = BenchLog::new(&format!("batch-{name}"), backend.clone());
        let record = [9u8; 128];
        let batch: Vec<&[u8]> = (0..64).map(|_| &record[..]).collect();
        group.throughput(Throughput::Elements(64));
        group.bench_function(format!("{name}/batch-64x128B"), |b| {
            b.iter(|| log.wal().append_batch(&batch).expect("batch"))
        });
    }
    group.finish();
}

fn commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("append+commit");
    group.sample_size(20);
    for (name, backend) in backends() {
        let log = BenchLog::new(&format!("commit-{name}"), backend);
        let data = [3u8; 128];
        group.bench_function(format!("{name}/128B"), |b| {
            b.iter(|| log.wal().append_durable(&data).expect("commit"))
        });
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    let log = BenchLog::new("read", Backend::Staged);
    let data = [5u8; 128];
    for _ in 0..100_000 {
        log.wal().append(&data).expect("append");
    }
    log.wal().sync().expect("sync");
    group.throughput(Throughput::Elements(100_000));
    group.bench_function("reader/100k x 128B", |b| {
        b.iter(|| {
            let mut reader = log.wal().reader(1).expect("reader");
            let mut bytes = 0;
            while let Some(record) = reader.next().expect("next") {
                bytes += record.data.len();
            }
            bytes
        })
    });
    group.throughput(Throughput::Elements(1));
    let mut lsn = 0u64;
    group.bench_function("read(lsn) random", |b| {
        b.iter_batched(
            || {
                lsn = (lsn * 6_364_136_223_846_793_005 + 1) % 100_000 + 1;
                lsn
            },
            |lsn| log.wal().read(lsn).expect("read"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = append, commit, read
}
criterion_main!(benches);
