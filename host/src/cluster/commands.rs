//! A policy's or saga's command on a clustered log: decided here when this host owns the
//! target stream's partition, else forwarded to its owner (`POST {url}/v1/cluster/commands`,
//! MessagePack both ways: the payload crosses as the bytes it is, not through JSON) and
//! answered with the owner's outcome. Without an owner (a failover under way) it has no outcome
//! yet: the caller's batch pauses and sends it again, with the same command id.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Cluster, FORWARD_PATH, ForwardAnswer, Route};
use crate::aggregate::{AggregateHandler, CommandError, CommandRequest};
use crate::dispatch::{CommandSender, Sent};
use crate::log::AppendError;

/// Most bytes of an owner's answer read (it is a few fields).
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// Sends commands to their streams' owners.
pub struct ClusterCommands {
    cluster: Arc<Cluster>,
    aggregates: BTreeMap<String, Arc<AggregateHandler>>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for ClusterCommands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCommands")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl ClusterCommands {
    pub fn new(cluster: Arc<Cluster>, aggregates: BTreeMap<String, Arc<AggregateHandler>>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // The owner answers after its append was read back (15 s at most).
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        ClusterCommands {
            cluster,
            aggregates,
            agent,
        }
    }

    fn forward(
        &self,
        url: &str,
        owner: &str,
        aggregate: &str,
        request: &CommandRequest,
    ) -> Result<ForwardAnswer, String> {
        let body = rmp_serde::to_vec_named(request).map_err(|e| e.to_string())?;
        let mut answer = self
            .agent
            .post(format!("{url}{FORWARD_PATH}/{aggregate}"))
            .header("content-type", "application/msgpack")
            .header(crate::cluster::FORWARDED_BY, self.cluster.host_id())
            .send(&body[..])
            .map_err(|e| format!("forwarding to {owner} ({url}): {e}"))?;
        let status = answer.status().as_u16();
        let bytes = answer
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()
            .map_err(|e| format!("reading {owner}'s answer: {e}"))?;
        if status != 200 {
            return Err(format!(
                "{owner} answered {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(512)])
            ));
        }
        rmp_serde::from_slice(&bytes).map_err(|e| format!("{owner}'s answer is malformed: {e}"))
    }
}

impl CommandSender for ClusterCommands {
    fn send(&self, aggregate: &str, request: CommandRequest) -> Result<Sent, CommandError> {
        let handler = self.aggregates.get(aggregate).ok_or_else(|| {
            CommandError::Append(AppendError::Unavailable(format!(
                "no aggregate named {aggregate:?} runs in this host"
            )))
        })?;
        let stream = handler.stream_of(&request.id);
        match self.cluster.route(&stream)? {
            Route::Local => {
                let o = handler.handle(request)?;
                Ok(Sent {
                    stream: o.stream,
                    version: o.version,
                    deduplicated: o.deduplicated,
                })
            }
            Route::NoOwner { partition } => Err(CommandError::Append(AppendError::Unavailable(
                format!("no host owns partition {partition} now (a failover is under way)"),
            ))),
            Route::Forward { host_id, url } => {
                crate::telemetry::cluster_forwarded();
                self.forward(&url, &host_id, aggregate, &request)
                    .map_err(|e| CommandError::Append(AppendError::Unavailable(e)))?
                    .into_result()
            }
        }
    }
}
