//! The `agent_action` step: a signed command to one agent, answered on its `cmd/ack`.
//!
//! - **Signed once per attempt.** The engine signs the attempt's command ([`CommandLink::sign`]:
//!   a fresh command id and nonce, valid until the attempt's deadline) and stores it in the
//!   run record before it is sent, so what goes out is always on record.
//! - **Re-sent, never re-signed.** [`resend`] publishes that same command (same id, nonce and
//!   signature) on the agent's `cmd` topic (QoS 1) every `resend_every` until the engine aborts
//!   it (answer, deadline, cancel). The agent runs a command id at most once and answers a
//!   re-send from its journal, so re-sending is what makes an answer that was lost (broker,
//!   collector or agent restart) arrive after all — and it is also what a restarted collector
//!   does with a stored, unanswered command.
//! - **Answers** come from ingest (`cmd/ack`) as an `EngineEvent::CommandAnswer`; [`outcome`]
//!   turns one into the attempt's [`Outcome`].

use std::collections::BTreeMap;
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use watchstand_shared::command::{CommandKey, CommandRequest, Signer, MAX_LIFETIME_MS};
use watchstand_shared::topic::{Channel, TopicLayout};
use watchstand_shared::wire::v1::{encode, Answer, CmdAck, Command, OutcomeStatus};

use super::run::Outcome;

/// Why an `agent_action` attempt fails when the collector has no signing key (`check` refuses
/// such a config; this is for configs built in code).
pub const NO_KEY: &str =
    "no signing key: set [commands] key_file (watchstand-collector keys generate)";

/// What the engine needs to send commands: the signer, the MQTT client and topic layout, the
/// re-send interval.
#[derive(Debug, Clone)]
pub struct CommandLink {
    signer: Signer,
    client: AsyncClient,
    layout: TopicLayout,
    resend_every: Duration,
}

impl CommandLink {
    /// A link signing with `key`, publishing through `client`.
    pub fn new(
        key: CommandKey,
        client: AsyncClient,
        layout: TopicLayout,
        resend_every: Duration,
    ) -> Self {
        Self {
            signer: Signer::new(key, Duration::from_millis(MAX_LIFETIME_MS)),
            client,
            layout,
            resend_every,
        }
    }

    /// Signs the command of attempt `attempt` of step `step` of run `run` for `agent` at `site`,
    /// valid from `now_ms` until the attempt's `deadline_ms`. The command id is unique per
    /// attempt (run, step, attempt and 32 random bits, so a collector whose store was wiped does
    /// not reuse an id an agent still remembers).
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        &self,
        (run, step, attempt): (u64, usize, u32),
        site: &str,
        agent: &str,
        action: &str,
        args: &BTreeMap<String, String>,
        now_ms: u64,
        deadline_ms: u64,
    ) -> Command {
        let request = CommandRequest {
            site: site.to_owned(),
            agent: agent.to_owned(),
            command_id: format!("run{run}.s{step}.a{attempt}.{:08x}", rand::random::<u32>()),
            run_id: run.to_string(),
            step: u32::try_from(step).unwrap_or(u32::MAX),
            action: action.to_owned(),
            args: args.clone(),
        };
        self.signer.sign_until(request, now_ms, deadline_ms)
    }

    /// The task body that sends `command` now and again every `resend_every`, forever (the
    /// engine aborts it).
    pub async fn resend(self, command: Command) -> Outcome {
        let topic = self
            .layout
            .agent(&command.site, &command.agent, Channel::Cmd);
        let payload = encode(&command);
        let mut sends = 0u64;
        loop {
            sends += 1;
            match self
                .client
                .publish(topic.as_str(), QoS::AtLeastOnce, false, payload.clone())
                .await
            {
                Ok(()) if sends == 1 => {
                    tracing::info!(command_id = %command.command_id, agent = %command.agent, action = %command.action, "Signed command sent.");
                }
                Ok(()) => {
                    tracing::debug!(command_id = %command.command_id, sends, "Unanswered command sent again.");
                }
                Err(e) => {
                    tracing::warn!(command_id = %command.command_id, error = %e, "Command not queued; sending again later.");
                }
            }
            tokio::time::sleep(self.resend_every).await;
        }
    }
}

/// The attempt's outcome for an agent's answer.
pub fn outcome(ack: &CmdAck) -> Outcome {
    let journal = if ack.from_journal {
        " (answered from the agent's journal)"
    } else {
        ""
    };
    match &ack.answer {
        Answer::Refused { reason, detail } => Outcome::Failed {
            reason: format!(
                "refused by agent {}: {}: {detail}",
                ack.agent,
                reason.as_str()
            ),
        },
        Answer::Outcome(o) => {
            let code = match (o.exit_code, o.http_status) {
                (Some(c), _) => format!("exit code {c}"),
                (None, Some(s)) => format!("HTTP {s}"),
                (None, None) => "no exit code".to_owned(),
            };
            let mut text = format!(
                "{} on {} after {} ms, {code}{journal}",
                o.status.as_str(),
                ack.agent,
                o.duration_ms
            );
            for (name, tail) in [("stdout", &o.stdout_tail), ("stderr", &o.stderr_tail)] {
                if !tail.trim().is_empty() {
                    text.push_str(&format!("; {name}: {}", tail.trim()));
                }
            }
            if let Some(e) = &o.error {
                text.push_str(&format!("; error: {e}"));
            }
            if o.status == OutcomeStatus::Succeeded {
                Outcome::Succeeded { detail: text }
            } else {
                Outcome::Failed { reason: text }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use watchstand_shared::command::{RefusalReason, Verifier};
    use watchstand_shared::wire::v1::{CommandOutcome, CommandRef};

    use super::*;

    fn ack(answer: Answer, from_journal: bool) -> CmdAck {
        CmdAck {
            v: 1,
            site: "s".into(),
            agent: "edge-1".into(),
            boot: "b".into(),
            seq: 1,
            at_ms: 1,
            command: Some(CommandRef {
                command_id: "c".into(),
                run_id: "1".into(),
                step: 0,
                action: "promote".into(),
            }),
            from_journal,
            answer,
        }
    }

    #[tokio::test]
    async fn a_signed_attempt_verifies_expires_with_its_deadline_and_ids_differ() {
        let (client, _eventloop) =
            AsyncClient::new(rumqttc::MqttOptions::new("t", "127.0.0.1", 1), 10);
        let key = CommandKey::from_seed([7; 32]);
        let link = CommandLink::new(
            key.clone(),
            client,
            TopicLayout::new("watchstand"),
            Duration::from_secs(1),
        );
        let now = 1_767_225_600_000;
        let args = BTreeMap::from([("role".to_owned(), "standby".to_owned())]);
        let a = link.sign(
            (4, 1, 2),
            "s",
            "edge-1",
            "promote",
            &args,
            now,
            now + 30_000,
        );
        let b = link.sign(
            (4, 1, 2),
            "s",
            "edge-1",
            "promote",
            &args,
            now,
            now + 30_000,
        );
        assert!(a.command_id.starts_with("run4.s1.a2."), "{}", a.command_id);
        assert_ne!(a.command_id, b.command_id);
        assert_ne!(a.nonce, b.nonce);
        assert_eq!(
            (a.run_id.as_str(), a.step, a.expires_ms),
            ("4", 1, now + 30_000)
        );
        let v = Verifier::new(key.public(), "s", "edge-1", 0);
        assert!(v.verify(&encode(&a), now + 30_000).is_ok());
        assert!(v.verify(&encode(&a), now + 30_001).is_err());
    }

    #[test]
    fn answers_become_outcomes_naming_the_agent_and_what_it_saw() {
        let done = CommandOutcome {
            status: OutcomeStatus::Succeeded,
            exit_code: Some(0),
            http_status: None,
            started_ms: 1,
            duration_ms: 12,
            stdout_tail: "promoted\n".into(),
            stderr_tail: String::new(),
            error: None,
        };
        let Outcome::Succeeded { detail } = outcome(&ack(Answer::Outcome(done.clone()), true))
        else {
            panic!("a succeeded action is a succeeded attempt");
        };
        assert_eq!(
            detail,
            "succeeded on edge-1 after 12 ms, exit code 0 (answered from the agent's journal); stdout: promoted"
        );
        let interrupted = CommandOutcome {
            status: OutcomeStatus::Interrupted,
            exit_code: None,
            ..done
        };
        assert!(matches!(
            outcome(&ack(Answer::Outcome(interrupted), true)),
            Outcome::Failed { reason } if reason.starts_with("interrupted on edge-1")
        ));
        let refused = Answer::Refused {
            reason: RefusalReason::ArgumentRefused,
            detail: "role: \"x\" is not allowed".into(),
        };
        assert_eq!(
            outcome(&ack(refused, false)),
            Outcome::Failed {
                reason: "refused by agent edge-1: argument_refused: role: \"x\" is not allowed"
                    .into()
            }
        );
    }
}
