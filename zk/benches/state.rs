//! Throughput of the pure state machine (no I/O): the ceiling the single write sequencer can
//! reach before the log and the network. `cargo bench -p kiln-zk`; `-- --test` runs each once.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kiln_zk::jute::{Reader, Writer};
use kiln_zk::proto::{Acl, CreateRequest, Request, op};
use kiln_zk::state::{Client, StateConfig, ZkState};

const NODES: usize = 1_000;

fn create(path: String) -> Request {
    Request::Create {
        op: op::CREATE2,
        req: CreateRequest {
            path,
            data: Some(vec![7; 100]),
            acl: Acl::open_unsafe(),
            flags: 0,
            ttl: -1,
        },
    }
}

fn populated() -> ZkState {
    let mut st = ZkState::new(StateConfig::default(), 0);
    let c = Client {
        session: 1,
        auth: &[],
    };
    st.process(&c, 0, &create("/b".into()), 0);
    for i in 0..NODES {
        st.process(&c, 0, &create(format!("/b/n{i}")), 0);
    }
    st
}

fn bench(c: &mut Criterion) {
    let client = Client {
        session: 1,
        auth: &[],
    };
    let mut g = c.benchmark_group("zk_state");
    g.throughput(Throughput::Elements(NODES as u64));
    g.bench_function("create_1000", |b| {
        b.iter_batched(
            || {
                let mut st = ZkState::new(StateConfig::default(), 0);
                st.process(&client, 0, &create("/b".into()), 0);
                st
            },
            |mut st| {
                for i in 0..NODES {
                    st.process(&client, 0, &create(format!("/b/n{i}")), 0);
                }
                st
            },
            BatchSize::LargeInput,
        )
    });
    let mut st = populated();
    g.bench_function("get_data_1000", |b| {
        b.iter(|| {
            for i in 0..NODES {
                st.process(
                    &client,
                    0,
                    &Request::GetData {
                        path: format!("/b/n{i}"),
                        watch: false,
                    },
                    0,
                );
            }
        })
    });
    g.bench_function("set_data_1000", |b| {
        b.iter(|| {
            for i in 0..NODES {
                let req = Request::SetData {
                    path: format!("/b/n{i}"),
                    data: Some(vec![1; 100]),
                    version: -1,
                };
                st.process(&client, 0, &req, 0);
            }
        })
    });
    let mut frame = Writer::new();
    create("/b/some/fairly/long/path/n1".into()).encode(&mut frame);
    let frame = frame.into_inner();
    g.bench_function("decode_create_1000", |b| {
        b.iter(|| {
            for _ in 0..NODES {
                let _ = Request::decode(op::CREATE2, &mut Reader::new(&frame, 1 << 20));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
