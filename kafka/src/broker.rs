//! Broker start-up and shutdown.
//!
//! Start-up, in order:
//! 1. create `log.dirs`; read or write `meta.properties` (cluster id, node id, as Kafka does);
//! 2. load the topic catalog and the producer-id allocator;
//! 3. bind the listening socket (port 0 picks a free port, advertised when no
//!    `advertised.listeners` is given);
//! 4. start the shards ([`kiln_engine::shard::ShardSet`]); each opens (recovers) the partitions
//!    placed on it, shard 0 also opens the group coordinator, then every shard accepts
//!    connections on the shared socket and serves its mailbox;
//! 5. [`Broker::start`] returns once every shard is serving (or the first failure).
//!
//! Shutdown: the [`Shutdown`] token is requested (SIGINT/SIGTERM via `kiln`, or
//! [`Broker::stop`]); each shard stops accepting, flushes the group coordinator (shard 0), and
//! the engine flushes its commit group so every accepted append is durable; then threads join.

use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, OnceLock};

use kiln_engine::rt;
use kiln_engine::shard::{ShardConfig, ShardCtx, ShardSet};
use kiln_engine::shutdown::Shutdown;

use crate::catalog::{CatalogStore, StoreError};
use crate::config::{BrokerConfig, Endpoint};
use crate::group::{GroupConfig, GroupService};
use crate::handlers::fetch::session::{self, EVICTION_MS, FetchSessionCache};
use crate::producer_ids::ProducerIds;
use crate::shard::{Job, MAILBOX_JOBS_MAX, ShardState, Shared, admit_connection, select2};

/// Why the broker could not start or failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("starting shards: {0}")]
    Shards(#[from] kiln_engine::shard::ShardError),
    #[error("shard {shard} failed to start: {reason}")]
    ShardStart { shard: usize, reason: String },
}

/// A running broker.
pub struct Broker {
    shards: Option<ShardSet>,
    shutdown: Shutdown,
    shared: Arc<Shared>,
}

impl Broker {
    /// Starts the broker (steps 1-5 of the module docs). `shutdown` stops it when requested.
    pub fn start(config: BrokerConfig, shutdown: Shutdown) -> Result<Broker, BrokerError> {
        let dir = config.log_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| BrokerError::Io {
            op: "creating",
            path: dir.display().to_string(),
            source,
        })?;
        let cluster_id = cluster_id(&dir, config.broker_id)?;
        let store = CatalogStore::new(&dir);
        let catalog = store.load()?;
        let producer_ids = ProducerIds::open(&dir)?;

        let listener = bind(&config.listener)?;
        set_buffer_size(&listener, libc::SO_SNDBUF, config.socket_send_buffer_bytes);
        set_buffer_size(
            &listener,
            libc::SO_RCVBUF,
            config.socket_receive_buffer_bytes,
        );
        let bound = listener.local_addr().map_err(|source| BrokerError::Io {
            op: "reading the address of",
            path: format!("{:?}", config.listener),
            source,
        })?;
        let cores = kiln_engine::shard::allowed_cpus().len().max(1);
        let shard_count = config.shard_count(cores);
        let advertised = OnceLock::new();
        if !config.raw.contains_key("advertised.listeners") && config.listener.port == 0 {
            let _ = advertised.set(Endpoint {
                port: bound.port(),
                ..config.advertised.clone()
            });
        }
        let shared = Arc::new(Shared {
            catalog: Mutex::new(catalog),
            store,
            shard_count,
            connections: AtomicU32::new(0),
            producer_ids: Mutex::new(producer_ids),
            cluster_id,
            advertised,
            config,
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<(usize, Result<(), String>)>();
        let entry_shared = shared.clone();
        let ready_tx = Mutex::new(ready_tx);
        let listener = Arc::new(listener);
        let shard_config = ShardConfig {
            count: Some(shard_count),
            pin: shard_count > 1,
            mailbox_messages_max: MAILBOX_JOBS_MAX,
            name: "kiln-kafka".into(),
        };
        let shards = ShardSet::start(
            &shard_config,
            shutdown.clone(),
            move |ctx: ShardCtx<Job>| {
                let shared = entry_shared.clone();
                let ready = ready_tx.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let listener = listener.try_clone();
                async move { shard_main(ctx, shared, listener, ready).await }
            },
        )?;
        let broker = Broker {
            shards: Some(shards),
            shutdown,
            shared,
        };
        for _ in 0..shard_count {
            match ready_rx.recv() {
                Ok((_, Ok(()))) => {}
                Ok((shard, Err(reason))) => {
                    broker.shutdown.request();
                    return Err(BrokerError::ShardStart { shard, reason });
                }
                Err(_) => {
                    broker.shutdown.request();
                    return Err(BrokerError::ShardStart {
                        shard: 0,
                        reason: "a shard exited during start-up".into(),
                    });
                }
            }
        }
        tracing::info!(
            address = %bound,
            shards = shard_count,
            advertised = ?broker.shared.advertised(),
            "kafka broker serving"
        );
        Ok(broker)
    }

    /// The advertised endpoint (the bound port when the configured port was 0).
    pub fn advertised(&self) -> Endpoint {
        self.shared.advertised()
    }

    /// Requests shutdown and waits for every shard to finish.
    pub fn stop(mut self) -> Result<(), BrokerError> {
        self.shutdown.request();
        self.join()
    }

    /// Waits until the shutdown token is requested and every shard finished.
    pub fn join(&mut self) -> Result<(), BrokerError> {
        match self.shards.take() {
            Some(s) => s.join().map_err(BrokerError::from),
            None => Ok(()),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.shards.is_some() {
            self.shutdown.request();
            let _ = self.join();
        }
    }
}

/// Runs the broker until `shutdown` is requested.
pub fn run(config: BrokerConfig, shutdown: Shutdown) -> Result<(), BrokerError> {
    let mut broker = Broker::start(config, shutdown)?;
    broker.join()
}

fn bind(listener: &Endpoint) -> Result<StdListener, BrokerError> {
    let host = if listener.host.is_empty() {
        "0.0.0.0"
    } else {
        listener.host.as_str()
    };
    let err = |op: &'static str| {
        let path = format!("{host}:{}", listener.port);
        move |source| BrokerError::Io { op, path, source }
    };
    let addrs: Vec<SocketAddr> = (host, listener.port)
        .to_socket_addrs()
        .map_err(err("resolving"))?
        .collect();
    let l = StdListener::bind(addrs.as_slice()).map_err(err("binding"))?;
    l.set_nonblocking(true).map_err(err("configuring"))?;
    Ok(l)
}

/// Applies `socket.send.buffer.bytes` / `socket.receive.buffer.bytes` to the listening socket;
/// accepted connections inherit them. -1 keeps the OS default. A refusal is logged, not fatal.
fn set_buffer_size(listener: &StdListener, option: libc::c_int, bytes: i32) {
    use std::os::fd::AsRawFd;
    if bytes < 0 {
        return;
    }
    let value: libc::c_int = bytes;
    // SAFETY: setsockopt on a socket this function borrows, with a pointer to a local c_int and
    // its exact size.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::warn!(option, bytes, error = %std::io::Error::last_os_error(), "setting a socket buffer size");
    }
}

fn cluster_id(dir: &Path, node_id: i32) -> Result<String, BrokerError> {
    let path = dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Some(id) = crate::config::properties::parse(&text).get("cluster.id")
    {
        return Ok(id.clone());
    }
    let id = crate::catalog::base64_url(&crate::catalog::new_topic_id());
    let text = format!("#\n# Written by Kiln\nversion=1\ncluster.id={id}\nnode.id={node_id}\n");
    std::fs::write(&path, text).map_err(|source| BrokerError::Io {
        op: "writing",
        path: path.display().to_string(),
        source,
    })?;
    Ok(id)
}

async fn shard_main(
    ctx: ShardCtx<Job>,
    shared: Arc<Shared>,
    listener: std::io::Result<StdListener>,
    ready: std::sync::mpsc::Sender<(usize, Result<(), String>)>,
) {
    let id = ctx.id.index();
    let shutdown = ctx.shutdown.clone();
    let inbox = ctx.inbox().clone();
    let shard = Rc::new(ShardState {
        id,
        ctx,
        shared: shared.clone(),
        partitions: Default::default(),
        fetch_memory_bytes: Default::default(),
        group: Default::default(),
        fetch_sessions: RefCell::new(FetchSessionCache::new(
            session::slots_per_shard(
                shared.config.fetch_session_cache_slots as usize,
                shared.shard_count,
            ),
            EVICTION_MS,
        )),
    });
    let raw_listener = listener.as_ref().map(std::os::fd::AsRawFd::as_raw_fd).ok();
    let listener = match open_shard(&shard, listener).await {
        Ok(l) => l,
        Err(reason) => {
            let _ = ready.send((id, Err(reason)));
            return;
        }
    };
    let _ = ready.send((id, Ok(())));
    drop(ready);

    rt::spawn(retention_loop(Rc::downgrade(&shard))).detach();
    let accept_loop = accept_loop(&shard, &listener);
    let mailbox_loop = async {
        while let Ok(job) = inbox.recv_async().await {
            let s = shard.clone();
            rt::spawn(job(s)).detach();
        }
    };
    let serving = select2(accept_loop, mailbox_loop);
    let _ = select2(serving, shutdown.wait()).await;
    // Take the socket out of LISTEN now: an accept still in flight in io_uring keeps the socket
    // open until the ring is torn down, which the kernel finishes after the process exits, and a
    // restarted broker could not bind the port meanwhile.
    if let Some(fd) = raw_listener {
        // SAFETY: `fd` belongs to `listener`, which is still alive here; shutdown(2) does not
        // close it.
        unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
    }
    drop(listener);
    let group = shard.group.borrow_mut().take();
    if let Some(g) = group
        && let Err(e) = g.flush().await
    {
        tracing::error!(error = %e, "flushing the group coordinator");
    }
    // Close every partition's log before dropping it: flushes pending bytes (the interval policy
    // included) and completes the active segment's indexes, as Kafka does on a clean shutdown.
    let parts: Vec<_> = shard
        .partitions
        .borrow_mut()
        .drain()
        .map(|(_, p)| p)
        .collect();
    for p in parts {
        if let Err(e) = p.log.close().await {
            tracing::error!(topic = %p.topic, partition = p.index, error = %e, "closing a partition log");
        }
    }
}

/// Opens this shard's partitions (and the group coordinator on shard 0), and its listener.
async fn open_shard(
    shard: &Rc<ShardState>,
    listener: std::io::Result<StdListener>,
) -> Result<rt::TcpListener, String> {
    let shared = &shard.shared;
    let topics: Vec<_> = shared.catalog().topics.values().cloned().collect();
    for meta in topics {
        let mine: Vec<i32> = (0..meta.partitions)
            .filter(|p| shared.owner(&meta.name, *p) == shard.id)
            .collect();
        crate::admin::open_local(shard, &meta, &mine)
            .await
            .map_err(|e| format!("opening topic {}: {e}", meta.name))?;
    }
    if shard.id == crate::handlers::group::GROUP_SHARD {
        let c = &shared.config;
        let ep = shared.advertised();
        let cfg = GroupConfig {
            min_session_timeout_ms: c.group_min_session_timeout_ms as i32,
            max_session_timeout_ms: c.group_max_session_timeout_ms as i32,
            initial_rebalance_delay_ms: c.group_initial_rebalance_delay_ms as i32,
            offsets_retention_ms: c.offsets_retention_minutes.saturating_mul(60_000),
            offsets_retention_check_interval_ms: c.offsets_retention_check_interval_ms as u64,
            node_id: c.broker_id,
            host: ep.host,
            port: i32::from(ep.port),
            ..GroupConfig::default()
        };
        let exists_shared = shared.clone();
        let exists: crate::shard::PartitionExists =
            Rc::new(move |t: &str, p: i32| exists_shared.catalog().partition_exists(t, p));
        let g = GroupService::open(&c.log_dir, cfg, exists)
            .await
            .map_err(|e| format!("opening the group coordinator: {e}"))?;
        *shard.group.borrow_mut() = Some(Rc::new(g));
    }
    let listener = listener.map_err(|e| format!("duplicating the listening socket: {e}"))?;
    rt::TcpListener::from_std(listener)
        .map_err(|e| format!("registering the listening socket: {e}"))
}

/// Applies `retention.ms` / `retention.bytes` to this shard's partitions every
/// `log.retention.check.interval.ms` (whole segments, never the active one).
async fn retention_loop(shard: std::rc::Weak<ShardState>) {
    loop {
        let Some(interval) = shard
            .upgrade()
            .map(|s| s.shared.config.retention_check_interval_ms.max(1) as u64)
        else {
            return;
        };
        kiln_engine::clock::sleep(std::time::Duration::from_millis(interval)).await;
        let Some(s) = shard.upgrade() else { return };
        let parts: Vec<_> = s.partitions.borrow().values().cloned().collect();
        drop(s);
        for p in parts {
            match p.log.apply_retention().await {
                Ok(o) if !o.deleted_segments.is_empty() => tracing::info!(
                    topic = %p.topic,
                    partition = p.index,
                    segments = o.deleted_segments.len(),
                    log_start_offset = o.log_start_offset,
                    "retention deleted segments"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(topic = %p.topic, partition = p.index, error = %e, "retention")
                }
            }
        }
    }
}

async fn accept_loop(shard: &Rc<ShardState>, listener: &rt::TcpListener) {
    use kiln_engine::ratelog::LogLimiter;
    let max = shard.shared.config.connections_max;
    let started = kiln_engine::clock::now();
    let mono_ms = || kiln_engine::clock::ms_since(started);
    let mut backoff = kiln_engine::accept::AcceptBackoff::default();
    let mut refusals = LogLimiter::default();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff.on_success();
                if !admit_connection(&shard.shared.connections, max) {
                    if let Some(suppressed) = refusals.admit("max-connections", mono_ms()).logged()
                    {
                        tracing::warn!(
                            %peer, max, suppressed,
                            "max.connections reached: closing a new connection"
                        );
                    }
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                rt::spawn(crate::conn::serve(shard.clone(), stream)).detach();
            }
            Err(e) => {
                // Out of descriptors, the connection waits in the backlog; idle connections
                // close at their deadline and free some.
                let after = backoff.on_error(&e, mono_ms());
                let delay_ms = after.delay.as_millis() as u64;
                if let Some(suppressed) = after.log.logged() {
                    tracing::warn!(error = %e, delay_ms, suppressed, "accept failed");
                }
                kiln_engine::clock::sleep(after.delay).await;
            }
        }
    }
}
