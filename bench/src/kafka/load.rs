//! The Kafka load loops (see the module docs of [`super`]).

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kiln_kafka_codec::generated::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kiln_kafka_codec::generated::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kiln_kafka_codec::{ApiKey, RequestBody, ResponseBody, frame};

use super::batch::{BatchBuilder, Compression, batches, for_each_stamp};
use super::client::{Client, TopicLayout, ensure_topic, list_offsets};
use crate::error::{FastRng, LoadError, Result};
use crate::procstat::{add_window_cpu, server_cpu};
use crate::rate::{Budget, Schedule, Window, wait_until};
use crate::stats::{Live, Percentiles, Recorder, RunResult, spawn_progress};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Produce,
    Consume,
    E2e,
}

/// What `kiln load kafka` runs.
#[derive(Debug, Clone)]
pub struct KafkaLoad {
    pub mode: Mode,
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    /// Producer connections (consume: consumer connections).
    pub connections: usize,
    /// e2e: consumer connections.
    pub consumers: usize,
    pub record_size: usize,
    /// 0 = null keys.
    pub key_size: usize,
    pub key_space: u64,
    /// Bytes of record values per batch (`batch.size`).
    pub batch_size: usize,
    pub linger: Duration,
    pub acks: i16,
    pub compression: Compression,
    pub in_flight: usize,
    /// Records/s over all producers; 0 = as fast as possible.
    pub rate: f64,
    pub duration: Option<Duration>,
    pub records: Option<u64>,
    pub warmup: Duration,
    pub fetch_max_bytes: i32,
    pub partition_max_bytes: i32,
    pub fetch_max_wait_ms: i32,
    pub topic_configs: Vec<(String, String)>,
    pub quiet: bool,
    /// The broker's process id on this machine, for its CPU over the measured window of a
    /// produce or e2e run (None: the process listening on the bootstrap port, when visible).
    pub server_pid: Option<u32>,
}

/// How long a consumer waits for new records before it decides the topic is drained.
const CONSUME_IDLE: Duration = Duration::from_secs(10);
/// How long e2e consumers keep reading after the producers stop.
const E2E_GRACE: Duration = Duration::from_secs(5);

pub fn run(cfg: &KafkaLoad) -> Result<RunResult> {
    if cfg.connections == 0 || cfg.in_flight == 0 || cfg.partitions <= 0 {
        return Err(LoadError::Config(
            "connections, in-flight and partitions must be at least 1".into(),
        ));
    }
    if cfg.record_size < 8 {
        return Err(LoadError::Config(
            "record size must be at least 8 bytes (values carry a timestamp)".into(),
        ));
    }
    if cfg.duration.is_none() && cfg.records.is_none() {
        return Err(LoadError::Config("give --duration or --records".into()));
    }
    // Checked first, so a wrong --server-pid fails the run before it creates anything.
    let server = server_cpu::resolve(&cfg.bootstrap, cfg.server_pid)?;
    let layout = ensure_topic(
        &cfg.bootstrap,
        &cfg.topic,
        cfg.partitions,
        &cfg.topic_configs,
    )?;
    let mut res = match cfg.mode {
        Mode::Produce => run_produce(cfg, &layout, server)?,
        // A consume run's window ends when the last data arrives, known only afterwards.
        Mode::Consume => run_consume(cfg, &layout)?,
        Mode::E2e => run_e2e(cfg, &layout, server)?,
    };
    res.params = serde_json::json!({
        "bootstrap": cfg.bootstrap, "topic": cfg.topic, "partitions": cfg.partitions,
        "connections": cfg.connections, "consumers": cfg.consumers, "record_size": cfg.record_size,
        "key_size": cfg.key_size, "key_space": cfg.key_space, "batch_size": cfg.batch_size,
        "linger_ms": cfg.linger.as_secs_f64() * 1e3, "acks": cfg.acks,
        "compression": format!("{:?}", cfg.compression).to_lowercase(), "in_flight": cfg.in_flight,
        "rate": cfg.rate, "warmup_s": cfg.warmup.as_secs_f64(),
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    Ok(res)
}

/// Connection `c`'s partitions and the address of their leader.
fn assign(layout: &TopicLayout, conns: usize) -> Vec<(String, Vec<i32>)> {
    let n = layout.leaders.len();
    (0..conns)
        .map(|c| {
            let parts: Vec<&(i32, String)> = if conns <= n {
                layout
                    .leaders
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| k % conns == c)
                    .map(|(_, p)| p)
                    .collect()
            } else {
                layout.leaders.get(c % n).into_iter().collect()
            };
            let addr = parts.first().map(|p| p.1.clone()).unwrap_or_default();
            // One connection per leader: partitions led elsewhere are left to other runs.
            let ids = parts.iter().filter(|p| p.1 == addr).map(|p| p.0).collect();
            (addr, ids)
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A Produce request in flight.
struct InFlight {
    correlation: i32,
    first: Instant,
    interval_ns: f64,
    records: u64,
}

struct Shared {
    cfg: KafkaLoad,
    /// Stamps are nanoseconds since this instant.
    base: Instant,
    window: Window,
    live: Arc<Live>,
    budget: Budget,
    /// Records acknowledged by the broker (e2e: the consumers' target).
    acked: AtomicU64,
    producers_done: AtomicBool,
}

fn spawn_producers(
    sh: &Arc<Shared>,
    layout: &TopicLayout,
) -> Result<Vec<JoinHandle<Result<Recorder>>>> {
    let cfg = &sh.cfg;
    let per_conn_rate = cfg.rate / cfg.connections as f64;
    let mut handles = Vec::new();
    for (c, (addr, parts)) in assign(layout, cfg.connections).into_iter().enumerate() {
        let client = Client::connect(&addr)?.unlimited()?;
        let version = client.version(ApiKey::Produce)?;
        let reader_version = version;
        let write_half = client
            .stream
            .try_clone()
            .map_err(LoadError::io("clone socket"))?;
        let schedule = Schedule::new(sh.window.start, per_conn_rate);
        if !schedule.is_paced() && cfg.acks != 0 {
            // As fast as possible: one thread sends and reads (see `produce_closed`).
            let sh = sh.clone();
            handles.push(std::thread::spawn(move || {
                let r = produce_closed(&sh, c, client, &parts);
                if r.is_err() {
                    sh.live.request_stop();
                }
                r
            }));
            continue;
        }
        let (tx, rx) = sync_channel::<InFlight>(cfg.in_flight);
        let sh_s = sh.clone();
        let Client { reader, .. } = client;
        let mut encoder = super::client::Encoder::default();
        handles.push(std::thread::spawn(move || {
            let r = produce_sender(
                &sh_s,
                c,
                &mut encoder,
                version,
                write_half,
                &parts,
                tx,
                schedule,
            );
            if r.is_err() {
                sh_s.live.request_stop();
            }
            r
        }));
        let sh_r = sh.clone();
        handles.push(std::thread::spawn(move || {
            let r = produce_receiver(&sh_r, reader, reader_version, rx);
            if r.is_err() {
                sh_r.live.request_stop();
            }
            r
        }));
    }
    Ok(handles)
}

#[allow(clippy::too_many_arguments)]
fn produce_sender(
    sh: &Shared,
    conn: usize,
    enc: &mut super::client::Encoder,
    version: i16,
    stream: std::net::TcpStream,
    parts: &[i32],
    pending: SyncSender<InFlight>,
    schedule: Schedule,
) -> Result<Recorder> {
    let cfg = &sh.cfg;
    let mut rec = Recorder::new();
    if parts.is_empty() {
        return Ok(rec);
    }
    let per_batch = (cfg.batch_size / cfg.record_size).max(1) as u64;
    let mut src = BatchSource::new(cfg, conn);
    let mut out = BufWriter::with_capacity(256 * 1024, stream);
    let mut frame = Vec::with_capacity(cfg.batch_size + 1024);
    let mut i: u64 = 0;
    let mut next_part = 0usize;
    let interval_ns = if schedule.is_paced() {
        1e9 * cfg.connections as f64 / cfg.rate
    } else {
        0.0
    };
    loop {
        if sh.live.stopped() {
            break;
        }
        let first = schedule.intended(i);
        if sh.window.over(first) {
            break;
        }
        let want = if schedule.is_paced() {
            let full = schedule.intended(i + per_batch - 1);
            let close = full.min(first + cfg.linger);
            if close > Instant::now() {
                out.flush().map_err(LoadError::io("send"))?;
                wait_until(close);
            }
            schedule.due_by(close).saturating_sub(i).clamp(1, per_batch)
        } else {
            per_batch
        };
        let n = sh.budget.take(want);
        if n == 0 {
            break;
        }
        let part = parts
            .get(next_part % parts.len())
            .copied()
            .unwrap_or_default();
        next_part += 1;
        let mut records = Vec::with_capacity(cfg.batch_size + 128);
        let base = sh.base;
        src.build(&mut records, n as usize, |j| {
            let t = first + Duration::from_nanos((interval_ns * j as f64) as u64);
            t.saturating_duration_since(base).as_nanos() as u64
        })?;
        let correlation = encode_produce(cfg, enc, version, part, records, &mut frame)?;
        if cfg.acks == 0 {
            // No response will come: count the records as sent.
            if sh.window.measured(first) {
                rec.ops += n;
                rec.bytes += n * cfg.record_size as u64;
            }
            sh.live.add(n, n * cfg.record_size as u64);
            sh.acked.fetch_add(n, Ordering::Relaxed);
        } else {
            let f = InFlight {
                correlation,
                first,
                interval_ns,
                records: n,
            };
            match pending.try_send(f) {
                Ok(()) => {}
                Err(TrySendError::Full(f)) => {
                    // Everything in flight must be on the wire before waiting for its acks.
                    out.flush().map_err(LoadError::io("send"))?;
                    if pending.send(f).is_err() {
                        break;
                    }
                }
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        out.write_all(&frame).map_err(LoadError::io("send"))?;
        i += n;
    }
    out.flush().map_err(LoadError::io("send"))?;
    Ok(rec)
}

/// What one connection's batches share: the payload and the key generator.
struct BatchSource {
    payload: Vec<u8>,
    rng: FastRng,
    builder: BatchBuilder,
    key_size: usize,
    key_space: u64,
}

impl BatchSource {
    fn new(cfg: &KafkaLoad, conn: usize) -> Self {
        let mut payload = vec![0u8; cfg.record_size];
        let mut rng = FastRng::new(0xbeef + conn as u64);
        for b in payload.iter_mut() {
            *b = rng.next_u64() as u8;
        }
        BatchSource {
            payload,
            rng,
            builder: BatchBuilder::new(cfg.compression),
            key_size: cfg.key_size.min(24),
            key_space: cfg.key_space.max(1),
        }
    }

    /// Appends a batch of `n` records to `out`; record `j`'s stamp is `stamp(j)`.
    fn build(
        &mut self,
        out: &mut Vec<u8>,
        n: usize,
        stamp: impl FnMut(usize) -> u64,
    ) -> Result<()> {
        let (key_size, key_space, rng) = (self.key_size, self.key_space, &mut self.rng);
        self.builder.build(
            out,
            n,
            now_ms(),
            &self.payload,
            |_, kbuf| {
                if key_size == 0 {
                    return None;
                }
                let mut k = rng.below(key_space);
                for slot in kbuf.iter_mut().take(key_size).rev() {
                    *slot = b'0' + (k % 10) as u8;
                    k /= 10;
                }
                Some(key_size)
            },
            stamp,
        )
    }
}

/// Encodes a Produce request of one batch for `part` into `frame` (cleared first).
fn encode_produce(
    cfg: &KafkaLoad,
    enc: &mut super::client::Encoder,
    version: i16,
    part: i32,
    records: Vec<u8>,
    frame: &mut Vec<u8>,
) -> Result<i32> {
    let req = RequestBody::Produce(ProduceRequest {
        transactional_id: None,
        acks: cfg.acks,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: cfg.topic.clone(),
            partition_data: vec![PartitionProduceData {
                index: part,
                records: Some(Bytes::from(records)),
            }],
            ..Default::default()
        }],
    });
    frame.clear();
    enc.encode(&req, version, frame)
}

/// Checks one Produce response against the request it answers; returns its first error code.
fn produce_outcome(frame: Vec<u8>, version: i16, correlation: i32) -> Result<Option<i16>> {
    let (h, body) =
        frame::decode_response_frame(ApiKey::Produce.key(), version, Bytes::from(frame))
            .map_err(|e| LoadError::Protocol(format!("Produce response: {e}")))?;
    if h.correlation_id != correlation {
        return Err(LoadError::Protocol(format!(
            "correlation {} for request {correlation}",
            h.correlation_id
        )));
    }
    let ResponseBody::Produce(r) = body else {
        return Err(LoadError::Protocol("Produce: unexpected response".into()));
    };
    Ok(r.responses
        .iter()
        .flat_map(|t| &t.partition_responses)
        .map(|pr| pr.error_code)
        .find(|&e| e != 0))
}

/// As fast as possible (acks 1 or -1), on one thread per connection: keeps `in_flight`
/// requests on the wire, sending them together, then reads acknowledgements; every one read
/// lets another request go. No thread hand-off per request, so the load generator spends its
/// core on records and the socket rather than on waking its own threads. Latency is measured
/// from each request's send (with no target rate, the intended time is when it is built).
fn produce_closed(sh: &Shared, conn: usize, client: Client, parts: &[i32]) -> Result<Recorder> {
    let cfg = &sh.cfg;
    let mut rec = Recorder::new();
    if parts.is_empty() {
        return Ok(rec);
    }
    let version = client.version(ApiKey::Produce)?;
    let Client {
        stream, mut reader, ..
    } = client;
    let mut enc = super::client::Encoder::default();
    let per_batch = (cfg.batch_size / cfg.record_size).max(1) as u64;
    let mut src = BatchSource::new(cfg, conn);
    let mut out = BufWriter::with_capacity(256 * 1024, stream);
    let mut frame = Vec::with_capacity(cfg.batch_size + 1024);
    let mut in_flight: std::collections::VecDeque<InFlight> =
        std::collections::VecDeque::with_capacity(cfg.in_flight);
    let mut next_part = 0usize;
    let mut done = false;
    loop {
        // Fill the window.
        while !done && in_flight.len() < cfg.in_flight {
            let first = Instant::now();
            if sh.live.stopped() || sh.window.over(first) {
                done = true;
                break;
            }
            let n = sh.budget.take(per_batch);
            if n == 0 {
                done = true;
                break;
            }
            let part = parts
                .get(next_part % parts.len())
                .copied()
                .unwrap_or_default();
            next_part += 1;
            let stamp = first.saturating_duration_since(sh.base).as_nanos() as u64;
            let mut records = Vec::with_capacity(cfg.batch_size + 128);
            src.build(&mut records, n as usize, |_| stamp)?;
            let correlation = encode_produce(cfg, &mut enc, version, part, records, &mut frame)?;
            out.write_all(&frame).map_err(LoadError::io("send"))?;
            in_flight.push_back(InFlight {
                correlation,
                first,
                interval_ns: 0.0,
                records: n,
            });
        }
        out.flush().map_err(LoadError::io("send"))?;
        let Some(p) = in_flight.pop_front() else {
            break;
        };
        let f = reader
            .next_frame_owned()
            .map_err(LoadError::io("read Produce response"))?;
        account_produce(sh, &mut rec, &p, f, version, Instant::now())?;
    }
    Ok(rec)
}

fn produce_receiver(
    sh: &Shared,
    mut reader: crate::net::FrameReader,
    version: i16,
    pending: Receiver<InFlight>,
) -> Result<Recorder> {
    let mut rec = Recorder::new();
    while let Ok(p) = pending.recv() {
        let f = reader
            .next_frame_owned()
            .map_err(LoadError::io("read Produce response"))?;
        account_produce(sh, &mut rec, &p, f, version, Instant::now())?;
    }
    Ok(rec)
}

/// Counts one Produce response against the batch it answers: an error, or acked records with
/// their latencies (from each record's intended send time when the batch was paced).
fn account_produce(
    sh: &Shared,
    rec: &mut Recorder,
    p: &InFlight,
    frame: Vec<u8>,
    version: i16,
    now: Instant,
) -> Result<()> {
    let size = sh.cfg.record_size as u64;
    if let Some(code) = produce_outcome(frame, version, p.correlation)? {
        sh.live.error();
        rec.errors += p.records;
        if rec.errors == p.records {
            eprintln!(
                "kiln load kafka: Produce error code {code} (further errors are only counted)"
            );
        }
        return Ok(());
    }
    sh.live.add(p.records, p.records * size);
    sh.acked.fetch_add(p.records, Ordering::Relaxed);
    if !sh.window.measured(p.first) {
        return Ok(());
    }
    rec.ops += p.records;
    rec.bytes += p.records * size;
    if p.interval_ns == 0.0 {
        rec.record_ns_n(
            now.saturating_duration_since(p.first).as_nanos() as u64,
            p.records,
        );
    } else {
        for j in 0..p.records {
            let t = p.first + Duration::from_nanos((p.interval_ns * j as f64) as u64);
            rec.record_ns(now.saturating_duration_since(t).as_nanos() as u64);
        }
    }
    Ok(())
}

fn join_all(handles: Vec<JoinHandle<Result<Recorder>>>) -> Result<Recorder> {
    let mut total = Recorder::new();
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => total.merge(&r),
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => {
                first_err = first_err.or(Some(LoadError::Protocol("load thread panicked".into())))
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

fn shared(cfg: &KafkaLoad, budget: Option<u64>) -> Arc<Shared> {
    Arc::new(Shared {
        cfg: cfg.clone(),
        base: Instant::now(),
        window: Window::new(cfg.warmup, cfg.duration),
        live: Live::new(),
        budget: Budget::new(budget),
        acked: AtomicU64::new(0),
        producers_done: AtomicBool::new(false),
    })
}

fn run_produce(
    cfg: &KafkaLoad,
    layout: &TopicLayout,
    server: Option<server_cpu::ServerPid>,
) -> Result<RunResult> {
    let sh = shared(cfg, cfg.records);
    let window_cpu = server_cpu::WindowCpu::start(server, sh.window.measure_from, sh.window.end);
    let progress = spawn_progress(sh.live.clone(), "records", cfg.quiet);
    let handles = spawn_producers(&sh, layout);
    let total = handles.and_then(join_all);
    let end = Instant::now();
    sh.live.request_stop();
    let _ = progress.join();
    let total = total?;
    let window = end.saturating_duration_since(sh.window.measure_from);
    let mut res = RunResult::new("kafka-produce", "records", &total, window, cfg.rate);
    res.latency_of = if cfg.acks == 0 {
        "none (acks=0)".into()
    } else {
        "intended send -> ack".into()
    };
    add_window_cpu(&mut res, window_cpu);
    Ok(res)
}

/// Per consumer: records seen, fetch latency, e2e latency, and when data last arrived.
struct ConsumerOut {
    fetch: Recorder,
    e2e: Recorder,
    last_data: Instant,
}

fn run_consume(cfg: &KafkaLoad, layout: &TopicLayout) -> Result<RunResult> {
    let sh = shared(cfg, cfg.records);
    let progress = spawn_progress(sh.live.clone(), "records", cfg.quiet);
    let result = spawn_consumers(&sh, layout, cfg.connections, -2).and_then(join_consumers);
    sh.live.request_stop();
    let _ = progress.join();
    let out = result?;
    let window = out
        .last_data
        .saturating_duration_since(sh.window.measure_from);
    let mut res = RunResult::new("kafka-consume", "records", &out.fetch, window, 0.0);
    res.latency_of = "Fetch round trip".into();
    Ok(res)
}

fn join_consumers(handles: Vec<JoinHandle<Result<ConsumerOut>>>) -> Result<ConsumerOut> {
    let mut total = ConsumerOut {
        fetch: Recorder::new(),
        e2e: Recorder::new(),
        last_data: Instant::now() - Duration::from_secs(3600),
    };
    let mut first_err = None;
    let mut any = false;
    for h in handles {
        match h.join() {
            Ok(Ok(o)) => {
                total.fetch.merge(&o.fetch);
                total.e2e.merge(&o.e2e);
                total.last_data = total.last_data.max(o.last_data);
                any = true;
            }
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => {
                first_err = first_err.or(Some(LoadError::Protocol("consumer panicked".into())))
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    if !any {
        return Err(LoadError::Config("no consumers".into()));
    }
    Ok(total)
}

fn spawn_consumers(
    sh: &Arc<Shared>,
    layout: &TopicLayout,
    conns: usize,
    start_at: i64,
) -> Result<Vec<JoinHandle<Result<ConsumerOut>>>> {
    let mut handles = Vec::new();
    for (addr, parts) in assign(layout, conns) {
        if parts.is_empty() {
            continue;
        }
        let mut client = Client::connect(&addr)?.unlimited()?;
        let offsets = list_offsets(&mut client, &sh.cfg.topic, &parts, start_at)?;
        let sh = sh.clone();
        handles.push(std::thread::spawn(move || {
            let r = consume_loop(&sh, client, &parts, offsets);
            if r.is_err() {
                sh.live.request_stop();
            }
            r
        }));
    }
    Ok(handles)
}

fn consume_loop(
    sh: &Shared,
    mut client: Client,
    parts: &[i32],
    mut offsets: HashMap<i32, i64>,
) -> Result<ConsumerOut> {
    let cfg = &sh.cfg;
    let e2e = cfg.mode == Mode::E2e;
    let version = client.version(ApiKey::Fetch)?;
    let mut out = ConsumerOut {
        fetch: Recorder::new(),
        e2e: Recorder::new(),
        last_data: Instant::now(),
    };
    let mut frame_buf = Vec::new();
    let mut grace: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if sh.live.stopped() && !e2e {
            break;
        }
        if e2e && sh.producers_done.load(Ordering::Relaxed) {
            let deadline = *grace.get_or_insert(now + E2E_GRACE);
            if sh.live.ops.load(Ordering::Relaxed) >= sh.acked.load(Ordering::Relaxed)
                || now > deadline
            {
                break;
            }
        }
        if !e2e && (sh.window.over(now) || now.duration_since(out.last_data) > CONSUME_IDLE) {
            break;
        }
        let req = RequestBody::Fetch(FetchRequest {
            replica_id: -1,
            max_wait_ms: cfg.fetch_max_wait_ms,
            min_bytes: 1,
            max_bytes: cfg.fetch_max_bytes,
            isolation_level: 0,
            session_id: 0,
            session_epoch: -1,
            topics: vec![FetchTopic {
                topic: cfg.topic.clone(),
                partitions: parts
                    .iter()
                    .map(|&p| FetchPartition {
                        partition: p,
                        fetch_offset: offsets.get(&p).copied().unwrap_or(0),
                        partition_max_bytes: cfg.partition_max_bytes,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        });
        frame_buf.clear();
        let correlation = client.encode(&req, version, &mut frame_buf)?;
        let sent = Instant::now();
        client
            .stream
            .write_all(&frame_buf)
            .map_err(LoadError::io("send Fetch"))?;
        let f = client
            .reader
            .next_frame_owned()
            .map_err(LoadError::io("read Fetch response"))?;
        let got = Instant::now();
        let (h, body) = frame::decode_response_frame(ApiKey::Fetch.key(), version, Bytes::from(f))
            .map_err(|e| LoadError::Protocol(format!("Fetch response: {e}")))?;
        if h.correlation_id != correlation {
            return Err(LoadError::Protocol(format!(
                "correlation {} for request {correlation}",
                h.correlation_id
            )));
        }
        let ResponseBody::Fetch(r) = body else {
            return Err(LoadError::Protocol("Fetch: unexpected response".into()));
        };
        if r.error_code != 0 {
            return Err(LoadError::Server(format!("Fetch error {}", r.error_code)));
        }
        let mut n_records = 0u64;
        let mut n_bytes = 0u64;
        for t in &r.responses {
            for p in &t.partitions {
                if p.error_code != 0 {
                    sh.live.error();
                    out.fetch.errors += 1;
                    continue;
                }
                let Some(recs) = &p.records else { continue };
                for b in batches(recs) {
                    let next = b.base_offset + i64::from(b.last_offset_delta) + 1;
                    let cur = offsets.entry(p.partition_index).or_insert(0);
                    if next <= *cur {
                        continue; // a batch before the requested offset
                    }
                    *cur = next;
                    n_records += u64::try_from(b.records_count).unwrap_or(0);
                    n_bytes += b.body.len() as u64;
                    if e2e {
                        for_each_stamp(&b, |stamp| {
                            let intended = sh.base + Duration::from_nanos(stamp);
                            if sh.window.measured(intended) {
                                out.e2e.ops += 1;
                                out.e2e.record_ns(
                                    got.saturating_duration_since(intended).as_nanos() as u64,
                                );
                            }
                        })?;
                    }
                }
            }
        }
        if n_records > 0 {
            out.last_data = got;
            if !e2e {
                let granted = sh.budget.take(n_records);
                n_records = granted;
                // Stop every consumer once the records asked for were read, also when the
                // last fetch took exactly what was left (else the others idle out).
                if sh.budget.spent() {
                    sh.live.request_stop();
                }
            }
        }
        sh.live.add(n_records, n_bytes);
        if sh.window.measured(sent) {
            out.fetch.ops += n_records;
            out.fetch.bytes += n_bytes;
            out.fetch
                .record_ns(got.saturating_duration_since(sent).as_nanos() as u64);
        }
        if !e2e && sh.live.stopped() {
            break;
        }
    }
    Ok(out)
}

fn run_e2e(
    cfg: &KafkaLoad,
    layout: &TopicLayout,
    server: Option<server_cpu::ServerPid>,
) -> Result<RunResult> {
    if cfg.rate <= 0.0 {
        return Err(LoadError::Config(
            "e2e needs --rate (records per second)".into(),
        ));
    }
    // The producers' budget is the record count; consumers count into `live`.
    let sh = shared(cfg, cfg.records);
    let window_cpu = server_cpu::WindowCpu::start(server, sh.window.measure_from, sh.window.end);
    let progress = spawn_progress(sh.live.clone(), "records", cfg.quiet);
    let consumers = spawn_consumers(&sh, layout, cfg.consumers.max(1), -1);
    let consumers = match consumers {
        Ok(c) => c,
        Err(e) => {
            sh.live.request_stop();
            let _ = progress.join();
            return Err(e);
        }
    };
    // Producers report to a separate live counter so `live` counts consumed records only.
    let psh = Arc::new(Shared {
        cfg: cfg.clone(),
        base: sh.base,
        window: sh.window,
        live: Live::new(),
        budget: Budget::new(cfg.records),
        acked: AtomicU64::new(0),
        producers_done: AtomicBool::new(false),
    });
    let produced = spawn_producers(&psh, layout).and_then(join_all);
    let end = Instant::now();
    sh.acked
        .store(psh.acked.load(Ordering::Relaxed), Ordering::Relaxed);
    sh.producers_done.store(true, Ordering::Relaxed);
    let consumed = join_consumers(consumers);
    sh.live.request_stop();
    let _ = progress.join();
    let produced = produced?;
    let consumed = consumed?;
    let window = end.saturating_duration_since(sh.window.measure_from);
    let mut res = RunResult::new("kafka-e2e", "records", &consumed.e2e, window, cfg.rate);
    res.bytes = produced.bytes;
    res.throughput_mb_s = produced.bytes as f64 / window.as_secs_f64().max(1e-9) / 1e6;
    res.latency_of = "intended send -> consumer receipt".into();
    let p = Percentiles::from_histogram(&produced.latency);
    res.extra
        .insert("produced_records".into(), serde_json::json!(produced.ops));
    res.extra.insert(
        "produce_ack_latency_us".into(),
        serde_json::json!({"p50": p.p50, "p99": p.p99, "p999": p.p999, "max": p.max}),
    );
    // Per record received in the window, like the run's throughput.
    add_window_cpu(&mut res, window_cpu);
    Ok(res)
}
