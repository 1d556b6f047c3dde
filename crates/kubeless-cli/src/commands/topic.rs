//! `kubeless topic create|delete|list|publish` (spec 1.4): Kafka topics,
//! managed with a Kafka client against the configured brokers instead of
//! exec-ing the Kafka shell scripts in a broker pod.
//!
//! Brokers: `--kafka-brokers`, else `KUBELESS_KAFKA_BROKERS`, else the
//! embedded server's `--kafka-brokers` (from its config endpoint).
//! `--kafka-namespace` is accepted for compatibility and not used.

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};

use super::Context;
use crate::log;

/// Flags every `topic` subcommand has.
#[derive(Debug, Args)]
pub struct BrokerFlags {
    /// Kafka brokers, host:port[,host:port] [default: the server's]
    #[arg(long = "kafka-brokers", env = "KUBELESS_KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// Namespace of the Kafka pods (Kubernetes backend; unused here)
    #[arg(long = "kafka-namespace", default_value = "kubeless")]
    kafka_namespace: String,
}

/// manage message topics in Kafka
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic
    Create {
        /// Topic name
        names: Vec<String>,
        /// Number of partitions
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        #[command(flatten)]
        brokers: BrokerFlags,
    },
    /// Delete a topic
    Delete {
        /// Topic name
        names: Vec<String>,
        #[command(flatten)]
        brokers: BrokerFlags,
    },
    /// List all topics
    #[command(visible_alias = "ls")]
    List {
        #[command(flatten)]
        brokers: BrokerFlags,
    },
    /// Publish a message to a topic
    Publish {
        /// Topic to publish to
        #[arg(long, default_value = "kubeless")]
        topic: String,
        /// The message
        #[arg(long)]
        data: String,
        #[command(flatten)]
        brokers: BrokerFlags,
    },
}

fn brokers(ctx: &Context, f: &BrokerFlags) -> anyhow::Result<String> {
    let _ = &f.kafka_namespace;
    if let Some(b) = f.kafka_brokers.as_deref().filter(|b| !b.is_empty()) {
        return Ok(b.to_string());
    }
    let b = ctx.backend()?.server_config()?.kafka_brokers;
    if b.is_empty() {
        bail!("no Kafka brokers configured: pass --kafka-brokers host:port");
    }
    Ok(b)
}

/// Run a `topic` subcommand.
pub fn run(ctx: &Context, cmd: TopicCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cmd {
        TopicCommand::Create {
            names,
            partitions,
            brokers: f,
        } => {
            let topic = super::one_name(&names, "topic name")?;
            if partitions < 1 {
                bail!("--partitions must be at least 1");
            }
            let b = brokers(ctx, &f)?;
            rt.block_on(kubeless_events::kafka::create_topic(
                &b, topic, partitions, false,
            ))?;
            log::info(format!("Created topic \"{topic}\"."));
        }
        TopicCommand::Delete { names, brokers: f } => {
            let topic = super::one_name(&names, "topic name")?;
            let b = brokers(ctx, &f)?;
            rt.block_on(kubeless_events::kafka::delete_topic(&b, topic))?;
            log::info(format!("Topic \"{topic}\" deleted."));
        }
        TopicCommand::List { brokers: f } => {
            let b = brokers(ctx, &f)?;
            let topics = rt.block_on(kubeless_events::kafka::list_topics(&b))?;
            let mut out = String::new();
            for t in topics.iter().filter(|t| !t.starts_with("__")) {
                out.push_str(t);
                out.push('\n');
            }
            crate::output::emit(&out);
        }
        TopicCommand::Publish {
            topic,
            data,
            brokers: f,
        } => {
            let b = brokers(ctx, &f)?;
            rt.block_on(async {
                let p = kubeless_events::kafka::producer(&b)?;
                kubeless_events::kafka::publish(&p, &b, &topic, None, data.as_bytes()).await
            })
            .map_err(|e| anyhow!(e))?;
        }
    }
    Ok(())
}
