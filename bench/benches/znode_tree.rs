//! Znode tree operations (kiln-zk's pure state machine, no I/O): create, getData, setData and
//! delete on a tree of 10,000 nodes under one parent.
//!
//! `cargo bench -p kiln-bench --bench znode_tree`; smoke-run in CI with `-- --test`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use kiln_zk::proto::Acl;
use kiln_zk::tree::{DataTree, TreeEvent};

const NODES: usize = 10_000;

fn filled() -> (DataTree, Vec<String>) {
    let mut t = DataTree::new();
    let mut ev: Vec<TreeEvent> = Vec::new();
    t.create("/b", None, Acl::open_unsafe(), 0, 1, 1, 0, None, &mut ev)
        .expect("create /b");
    let paths: Vec<String> = (0..NODES).map(|i| format!("/b/n{i:06}")).collect();
    for (i, p) in paths.iter().enumerate() {
        t.create(
            p,
            Some(vec![b'x'; 100]),
            Acl::open_unsafe(),
            0,
            i as i32 + 1,
            i as i64 + 2,
            0,
            None,
            &mut ev,
        )
        .expect("create");
        ev.clear();
    }
    (t, paths)
}

fn bench_tree(c: &mut Criterion) {
    let mut g = c.benchmark_group("znode_tree");
    g.bench_function("create_10k", |b| {
        b.iter_batched(
            DataTree::new,
            |mut t| {
                let mut ev = Vec::new();
                let _ = t.create("/b", None, Acl::open_unsafe(), 0, 1, 1, 0, None, &mut ev);
                for i in 0..NODES {
                    let p = format!("/b/n{i:06}");
                    let _ = t.create(
                        &p,
                        Some(vec![b'x'; 100]),
                        Acl::open_unsafe(),
                        0,
                        i as i32,
                        i as i64 + 2,
                        0,
                        None,
                        &mut ev,
                    );
                    ev.clear();
                }
                t
            },
            BatchSize::LargeInput,
        )
    });
    let (mut tree, paths) = filled();
    let mut i = 0usize;
    g.bench_function("get", |b| {
        b.iter(|| {
            i = (i + 7919) % NODES;
            black_box(tree.get(&paths[i]).map(|n| n.data_len()))
        })
    });
    let mut zxid = 1_000_000i64;
    let mut ev = Vec::new();
    g.bench_function("set_data_100b", |b| {
        b.iter(|| {
            i = (i + 7919) % NODES;
            zxid += 1;
            let r = tree.set_data(&paths[i], Some(vec![b'y'; 100]), 1, zxid, 0, None, &mut ev);
            ev.clear();
            black_box(r.is_ok())
        })
    });
    g.bench_function("create_delete", |b| {
        b.iter(|| {
            zxid += 1;
            let _ = tree.create(
                "/b/tmp",
                Some(vec![b'z'; 100]),
                Acl::open_unsafe(),
                0,
                1,
                zxid,
                0,
                None,
                &mut ev,
            );
            let r = tree.delete("/b/tmp", zxid + 1, None, &mut ev);
            ev.clear();
            black_box(r.is_ok())
        })
    });
    g.finish();
}

criterion_group!(benches, bench_tree);
criterion_main!(benches);
