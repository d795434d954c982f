//! The MQTT topic layout of protocol v1 and the rules for site and agent ids.
//!
//! Every agent topic is `{root}/v1/{site}/{agent}/{channel}`; the collector announces itself on
//! `{root}/v1/_collector/{id}/state`. Parsing is strict: a topic that does not fit the layout is
//! rejected by name, so that ingest can count it instead of guessing.

use std::fmt;
use thiserror::Error;

/// The protocol version segment of every topic.
pub const VERSION_SEGMENT: &str = "v1";
/// The default topic root.
pub const DEFAULT_ROOT: &str = "watchstand";
/// Longest allowed site or agent id.
pub const MAX_ID_LEN: usize = 64;

/// Why an id (site, agent, probe, boot) is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IdError {
    /// The id is empty.
    #[error("must not be empty")]
    Empty,
    /// The id is longer than [`MAX_ID_LEN`].
    #[error("is {len} characters long, at most {MAX_ID_LEN} are allowed")]
    TooLong {
        /// Length of the offending id.
        len: usize,
    },
    /// The id holds a character outside `[A-Za-z0-9_.-]`.
    #[error("contains {found:?}; only letters, digits, '_', '.' and '-' are allowed")]
    BadChar {
        /// The first offending character.
        found: char,
    },
}

/// Checks an id against `[A-Za-z0-9_.-]{1,64}`.
///
/// # Errors
/// Returns the first rule the id breaks.
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if let Some(found) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(IdError::BadChar { found });
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { len: id.len() });
    }
    Ok(())
}

/// The last segment of an agent topic: which stream the message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Batches of probe results (agent → collector).
    Results,
    /// Batches of capacity samples (agent → collector).
    Capacity,
    /// Birth and last will (agent → collector, retained).
    Status,
    /// The stored watermark (collector → agent, retained).
    Ack,
    /// A signed action request (collector → agent).
    Cmd,
    /// An action outcome (agent → collector).
    CmdAck,
}

impl Channel {
    /// The topic suffix of this channel.
    pub fn suffix(self) -> &'static str {
        match self {
            Channel::Results => "results",
            Channel::Capacity => "capacity",
            Channel::Status => "status",
            Channel::Ack => "ack",
            Channel::Cmd => "cmd",
            Channel::CmdAck => "cmd/ack",
        }
    }

    fn from_suffix(suffix: &str) -> Option<Self> {
        Some(match suffix {
            "results" => Channel::Results,
            "capacity" => Channel::Capacity,
            "status" => Channel::Status,
            "ack" => Channel::Ack,
            "cmd" => Channel::Cmd,
            "cmd/ack" => Channel::CmdAck,
            _ => return None,
        })
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suffix())
    }
}

/// Why a topic does not fit the v1 layout.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic does not start with `{root}/v1/`.
    #[error("topic {topic:?} is not under {root:?}/v1/")]
    WrongRoot {
        /// The topic as received.
        topic: String,
        /// The configured root.
        root: String,
    },
    /// The channel suffix is not one of the v1 channels.
    #[error("topic {topic:?} has no v1 channel")]
    UnknownChannel {
        /// The topic as received.
        topic: String,
    },
    /// The site or agent segment is not a valid id.
    #[error("topic {topic:?}: {segment} id {id:?} {source}")]
    BadId {
        /// The topic as received.
        topic: String,
        /// `site` or `agent`.
        segment: &'static str,
        /// The offending segment.
        id: String,
        /// What is wrong with it.
        source: IdError,
    },
}

/// A parsed agent topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentTopic {
    /// The site segment.
    pub site: String,
    /// The agent segment.
    pub agent: String,
    /// Which stream.
    pub channel: Channel,
}

/// Formats and parses topics under one configured root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicLayout {
    root: String,
    /// `{root}/v1/`, kept so that parsing does not allocate.
    prefix: String,
}

impl Default for TopicLayout {
    fn default() -> Self {
        Self::new(DEFAULT_ROOT)
    }
}

impl TopicLayout {
    /// A layout under `root` (e.g. `watchstand`). The root is validated with the config.
    pub fn new(root: &str) -> Self {
        let root = root.trim_end_matches('/').to_owned();
        let prefix = format!("{root}/{VERSION_SEGMENT}/");
        Self { root, prefix }
    }

    /// The configured root.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The topic of `channel` for one agent.
    pub fn agent(&self, site: &str, agent: &str, channel: Channel) -> String {
        format!("{}{site}/{agent}/{}", self.prefix, channel.suffix())
    }

    /// The wildcard subscription that covers `channel` for every site and agent.
    pub fn all_agents(&self, channel: Channel) -> String {
        format!("{}+/+/{}", self.prefix, channel.suffix())
    }

    /// The retained online/offline topic of collector `id`.
    pub fn collector_state(&self, id: &str) -> String {
        format!("{}_collector/{id}/state", self.prefix)
    }

    /// The wildcard subscription that covers every collector's retained state.
    pub fn all_collector_states(&self) -> String {
        format!("{}_collector/+/state", self.prefix)
    }

    /// The collector id of a collector state topic under this root, if `topic` is one.
    pub fn parse_collector_state<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let id = topic
            .strip_prefix(&self.prefix)?
            .strip_prefix("_collector/")?
            .strip_suffix("/state")?;
        (!id.is_empty() && !id.contains('/')).then_some(id)
    }

    /// Parses an agent topic.
    ///
    /// # Errors
    /// Names the topic and what does not fit: root, channel, or a bad site/agent id.
    pub fn parse(&self, topic: &str) -> Result<AgentTopic, TopicError> {
        let rest = topic
            .strip_prefix(&self.prefix)
            .ok_or_else(|| TopicError::WrongRoot {
                topic: topic.to_owned(),
                root: self.root.clone(),
            })?;
        let unknown = || TopicError::UnknownChannel {
            topic: topic.to_owned(),
        };
        let (site, rest) = rest.split_once('/').ok_or_else(unknown)?;
        let (agent, suffix) = rest.split_once('/').ok_or_else(unknown)?;
        let channel = Channel::from_suffix(suffix).ok_or_else(unknown)?;
        for (segment, id) in [("site", site), ("agent", agent)] {
            validate_id(id).map_err(|source| TopicError::BadId {
                topic: topic.to_owned(),
                segment,
                id: id.to_owned(),
                source,
            })?;
        }
        Ok(AgentTopic {
            site: site.to_owned(),
            agent: agent.to_owned(),
            channel,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_topics_round_trip_for_every_channel() {
        let layout = TopicLayout::default();
        for channel in [
            Channel::Results,
            Channel::Capacity,
            Channel::Status,
            Channel::Ack,
            Channel::Cmd,
            Channel::CmdAck,
        ] {
            let topic = layout.agent("plant-1", "gw.07", channel);
            let parsed = layout.parse(&topic).unwrap();
            assert_eq!(parsed.site, "plant-1");
            assert_eq!(parsed.agent, "gw.07");
            assert_eq!(parsed.channel, channel);
        }
        assert_eq!(
            layout.agent("s", "a", Channel::Results),
            "watchstand/v1/s/a/results"
        );
        assert_eq!(
            layout.all_agents(Channel::Status),
            "watchstand/v1/+/+/status"
        );
        assert_eq!(
            layout.collector_state("c1"),
            "watchstand/v1/_collector/c1/state"
        );
        assert_eq!(
            layout.all_collector_states(),
            "watchstand/v1/_collector/+/state"
        );
        assert_eq!(
            layout.parse_collector_state(&layout.collector_state("c1")),
            Some("c1")
        );
        assert_eq!(
            layout.parse_collector_state(&layout.agent("s", "a", Channel::Status)),
            None
        );
        assert_eq!(
            layout.parse_collector_state("other/v1/_collector/c1/state"),
            None
        );
    }

    #[test]
    fn topics_outside_the_layout_are_rejected_by_name() {
        let layout = TopicLayout::new("ws");
        let err = layout.parse("other/v1/s/a/results").unwrap_err();
        assert_eq!(
            err.to_string(),
            "topic \"other/v1/s/a/results\" is not under \"ws\"/v1/"
        );
        let err = layout.parse("ws/v1/s/a/bogus").unwrap_err();
        assert_eq!(
            err.to_string(),
            "topic \"ws/v1/s/a/bogus\" has no v1 channel"
        );
        let err = layout.parse("ws/v1/s/a b/results").unwrap_err();
        assert_eq!(
            err.to_string(),
            "topic \"ws/v1/s/a b/results\": agent id \"a b\" contains ' '; only letters, digits, '_', '.' and '-' are allowed"
        );
        assert!(layout.parse("ws/v1/s/results").is_err());
    }

    #[test]
    fn ids_follow_the_spec_charset_and_length() {
        assert_eq!(validate_id("gw-01_a.b"), Ok(()));
        assert_eq!(validate_id(""), Err(IdError::Empty));
        assert_eq!(validate_id("a/b"), Err(IdError::BadChar { found: '/' }));
        assert_eq!(validate_id(&"x".repeat(64)), Ok(()));
        assert_eq!(
            validate_id(&"x".repeat(65)),
            Err(IdError::TooLong { len: 65 })
        );
    }
}
