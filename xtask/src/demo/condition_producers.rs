//! condition-producers: five producers (0..20, 20..40, ...) and one consumer share a
//! bounded queue of 5 guarded by a `Condition`; a producer waits while it is full, the
//! consumer while it is empty, and each notifies the other.

use std::collections::VecDeque;
use std::sync::Arc;

use anyhow::{Context, ensure};
use flotilla::threading::Condition;

use super::Clock;

const CAPACITY: usize = 5;
const PRODUCERS: u32 = 5;
const PER_PRODUCER: u32 = 20;

/// The queue, the largest length it ever reached, and how often each side waited.
#[derive(Debug, Default)]
struct Shared {
    queue: VecDeque<u32>,
    longest: usize,
    producer_waits: usize,
    consumer_waits: usize,
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let shared = Arc::new(Condition::new(Shared::default()));
    let timeout = clock.units(100.0);

    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut producers = Vec::new();
        for p in 0..PRODUCERS {
            let shared = Arc::clone(&shared);
            let range = p * PER_PRODUCER..(p + 1) * PER_PRODUCER;
            // Scoped std threads, so they can borrow the clock; the subject here is
            // the Condition.
            let thread = std::thread::Builder::new()
                .name(format!("producer-{p}"))
                .spawn_scoped(scope, move || -> anyhow::Result<()> {
                    // Start a little late, so the consumer is seen waiting first.
                    clock.sleep(0.5);
                    clock.say(format_args!("producer-{p} starts: {range:?}"));
                    let mut waited = false;
                    for item in range {
                        let mut state = shared.lock();
                        if state.queue.len() >= CAPACITY {
                            state.producer_waits += 1;
                            if !waited {
                                // Only the first time per producer, to keep it readable.
                                clock.say(format_args!("producer-{p} waits: queue full"));
                                waited = true;
                            }
                        }
                        let room = state.wait_for_timeout(|s| s.queue.len() < CAPACITY, timeout);
                        ensure!(room, "producer-{p} found no room in the queue");
                        state.queue.push_back(item);
                        state.longest = state.longest.max(state.queue.len());
                        state.notify_all();
                        drop(state);
                        clock.sleep(0.05);
                    }
                    clock.say(format_args!("producer-{p} done"));
                    Ok(())
                })?;
            producers.push(thread);
        }

        let mut received = Vec::new();
        while received.len() < (PRODUCERS * PER_PRODUCER) as usize {
            let mut state = shared.lock();
            if state.queue.is_empty() {
                state.consumer_waits += 1;
                clock.say("consumer waits: queue empty");
            }
            ensure!(
                state.wait_for_timeout(|s| !s.queue.is_empty(), timeout),
                "the consumer waited in vain"
            );
            let item = state.queue.pop_front().context("non-empty queue")?;
            state.notify_all();
            drop(state);
            received.push(item);
            if received.len() % 20 == 0 {
                clock.say(format_args!("consumer has {} items", received.len()));
            }
            clock.sleep(0.1);
        }
        for producer in producers {
            producer
                .join()
                .map_err(|_| anyhow::anyhow!("a producer panicked"))??;
        }

        let state = shared.lock();
        let longest = state.longest;
        clock.say(format_args!(
            "consumed {} items; the queue never held more than {longest}; \
             producers waited {} times on a full queue, the consumer {} times on an empty one",
            received.len(),
            state.producer_waits,
            state.consumer_waits,
        ));
        drop(state);
        ensure!(longest <= CAPACITY, "the queue grew past {CAPACITY}");
        for p in 0..PRODUCERS {
            let range = p * PER_PRODUCER..(p + 1) * PER_PRODUCER;
            let from_p: Vec<u32> = received
                .iter()
                .copied()
                .filter(|i| range.contains(i))
                .collect();
            ensure!(
                from_p == range.collect::<Vec<_>>(),
                "producer-{p}'s items were lost, duplicated or reordered"
            );
        }
        Ok(())
    })
}
