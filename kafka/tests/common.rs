//! Shared helpers for the broker's integration tests: start a broker on a free port with its data
//! in a temporary directory.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use kiln_engine::shutdown::Shutdown;
use kiln_kafka::{Broker, BrokerConfig};

pub struct TestBroker {
    pub broker: Option<Broker>,
    pub port: u16,
}

impl TestBroker {
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(b) = self.broker.take() {
            b.stop().expect("broker stops cleanly");
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a broker with data in `dir`, listening on `port` (0 = any), with extra properties.
pub fn start_in(dir: &Path, port: u16, extra: &[(&str, &str)]) -> TestBroker {
    let mut props = BTreeMap::new();
    props.insert("log.dirs".to_string(), dir.display().to_string());
    props.insert(
        "listeners".to_string(),
        format!("PLAINTEXT://127.0.0.1:{port}"),
    );
    props.insert(
        "group.initial.rebalance.delay.ms".to_string(),
        "0".to_string(),
    );
    for (k, v) in extra {
        props.insert((*k).to_string(), (*v).to_string());
    }
    let config = BrokerConfig::from_properties(props).expect("valid test config");
    let broker = Broker::start(config, Shutdown::new()).expect("broker starts");
    let port = broker.advertised().port;
    TestBroker {
        broker: Some(broker),
        port,
    }
}
