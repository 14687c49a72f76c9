//! whisper: N engines in whisper-tests' simulator, a BroadcastOnly topic, `publish`.

use crate::common::{MESSAGES, Row, SPACING_US, Scenario, TAIL_US, WARMUP_US, payload};
use std::time::Instant as Wall;
use whisper_proto::{Bytes, Duration, Event, Instant, TopicConfig};
use whisper_tests::sim::metrics::FrameKind;
use whisper_tests::sim::{App, NodeCx, Sim, SimConfig, Topology};

const TOPIC: &str = "bench";

/// Records every first delivery (the publisher's own hop-0 delivery is skipped).
#[derive(Debug, Default)]
struct Deliveries;

fn key(id: &whisper_proto::rumor::RumorId) -> u64 {
    let b = id.as_bytes();
    u64::from_be_bytes(b[..8].try_into().expect("32-byte id"))
}

impl App for Deliveries {
    fn on_event(&mut self, cx: &mut NodeCx<'_>, event: &Event) {
        if let Event::Message { id, hop, .. } = event
            && *hop > 0
        {
            cx.deliveries
                .record_delivery(cx.node, key(id), u32::from(*hop), cx.now);
        }
    }
}

/// One run.
pub fn run(n: usize, scenario: Scenario, topology: &Topology, seed: u64) -> Row {
    let wall = Wall::now();
    let config = SimConfig {
        record_events: false,
        ..SimConfig::default()
    };
    let mut sim = Sim::with_app(n, topology, config, seed, Deliveries);
    if *topology == Topology::Cube {
        // The overlay is built for this member list: the engines route on it.
        sim.set_all_members();
    }
    for node in 0..n {
        sim.with_engine(node, |e, _| {
            e.register_topic(TOPIC, TopicConfig::broadcast())
                .expect("fresh engine registers the topic");
            e.subscribe(TOPIC).expect("registered topic");
        });
    }
    sim.run_until(Instant::from_micros(WARMUP_US));
    let before = sim.metrics().clone();
    for (i, origin) in scenario.origins(n, seed).into_iter().enumerate() {
        let body = Bytes::from(payload(i as u64));
        let id = sim
            .with_engine(origin, |e, now| e.publish(now, TOPIC, body))
            .expect("live node")
            .expect("publish on a registered BroadcastOnly topic");
        let now = sim.now();
        sim.deliveries_mut().record_publish(origin, key(&id), now);
        sim.run_for(Duration::from_micros(SPACING_US));
    }
    sim.run_for(Duration::from_micros(TAIL_US));
    let window = sim.metrics().since(&before);
    let payload_msgs = window.kind(FrameKind::Rumor).frames;
    let control_msgs = window.total().frames - window.payload().frames;
    let summary = sim.deliveries().summary(n - 1, payload_msgs);
    debug_assert_eq!(summary.messages as u64, MESSAGES);
    Row {
        library: "whisper".into(),
        n,
        scenario,
        overlay: match topology {
            Topology::FullMesh => "full mesh".into(),
            Topology::Random { k } => format!("random graph, {k} links started per node"),
            Topology::Cube => format!(
                "hypercube overlay, {} links, member list set",
                sim.link_count()
            ),
            other => format!("{other:?}"),
        },
        summary,
        payload_msgs,
        control_msgs,
        bytes_per_node: window.total().bytes as f64 / n as f64,
        wall_s: wall.elapsed().as_secs_f64(),
    }
}
