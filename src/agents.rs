//! The agent catalog: categories of agents, each with a system prompt. Built
//! in, or read from the file given with `--agents`.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

const BUILT_IN: &str = include_str!("agents.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub categories: Vec<Category>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub category: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub agents: Vec<Agent>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub assistant_id: String,
    pub agent_name: String,
    #[serde(default)]
    pub description: String,
    pub system_prompt: String,
    /// The model this agent uses unless told otherwise; when the server does
    /// not offer it, the server's default model is used instead.
    #[serde(default)]
    pub default_model: Option<String>,
    #[serde(default)]
    pub default: bool,
    /// Whether files proposed by its replies are written into the
    /// workspace; an agent that only answers questions writes none.
    #[serde(default = "writes_files_by_default")]
    pub writes_files: bool,
    /// The system prompt as a prompt carries it, with its tokens: made on
    /// the agent's first turn (counting needs the tokenizer, loaded then).
    #[serde(skip)]
    prompt: std::sync::OnceLock<(crate::llm::Text, u64)>,
}

impl Agent {
    /// The system prompt ready for a prompt, and how many tokens it takes.
    pub fn prompt(&self) -> &(crate::llm::Text, u64) {
        self.prompt.get_or_init(|| {
            (
                crate::llm::Text::new(self.system_prompt.as_str()),
                crate::llm::tokenizer::count(&self.system_prompt),
            )
        })
    }
}

fn writes_files_by_default() -> bool {
    true
}

impl Catalog {
    pub fn built_in() -> Self {
        Self::parse(BUILT_IN, "the built-in catalog").expect("the built-in agent catalog is valid")
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading agent catalog {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a catalog; errors name the file and, for syntax, the line.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Self> {
        let catalog: Catalog = toml::from_str(text).map_err(|err| {
            let line = err
                .span()
                .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
            match line {
                Some(line) => {
                    anyhow::anyhow!("agent catalog {origin}, line {line}: {}", err.message())
                }
                None => anyhow::anyhow!("agent catalog {origin}: {}", err.message()),
            }
        })?;
        catalog
            .check()
            .with_context(|| format!("agent catalog {origin}"))?;
        Ok(catalog)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.categories.is_empty() {
            bail!("it has no categories");
        }
        let mut categories = HashSet::new();
        let mut assistant_ids = HashSet::new();
        for category in &self.categories {
            if !is_identifier(&category.category) {
                bail!(
                    "category {:?} must be lowercase letters, digits and underscores",
                    category.category
                );
            }
            if !categories.insert(category.category.as_str()) {
                bail!("category {:?} appears twice", category.category);
            }
            if category.agents.is_empty() {
                bail!("category {:?} has no agents", category.category);
            }
            let mut names = HashSet::new();
            for agent in &category.agents {
                let id_ok = agent
                    .assistant_id
                    .strip_prefix("asst_")
                    .is_some_and(|rest| {
                        !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric())
                    });
                if !id_ok {
                    bail!(
                        "assistant_id {:?} must be asst_ followed by letters and digits",
                        agent.assistant_id
                    );
                }
                if !assistant_ids.insert(agent.assistant_id.as_str()) {
                    bail!("assistant_id {:?} appears twice", agent.assistant_id);
                }
                if agent.agent_name.trim().is_empty() || !names.insert(agent.agent_name.as_str()) {
                    bail!(
                        "agent name {:?} is empty or appears twice in {:?}",
                        agent.agent_name,
                        category.category
                    );
                }
                if agent.system_prompt.trim().is_empty() {
                    bail!("agent {:?} has an empty system_prompt", agent.agent_name);
                }
            }
        }
        Ok(())
    }

    pub fn category(&self, name: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.category == name)
    }
}

impl Category {
    pub fn default_agent(&self) -> &Agent {
        self.agents
            .iter()
            .find(|a| a.default)
            .unwrap_or(&self.agents[0])
    }

    /// The agent named by id and/or name; both must agree when both are given.
    pub fn find_agent(
        &self,
        assistant_id: Option<&str>,
        agent_name: Option<&str>,
    ) -> Option<&Agent> {
        match (assistant_id, agent_name) {
            (None, None) => Some(self.default_agent()),
            (id, name) => self.agents.iter().find(|a| {
                id.is_none_or(|id| a.assistant_id == id)
                    && name.is_none_or(|n| a.agent_name.eq_ignore_ascii_case(n))
            }),
        }
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_catalog_has_the_agents_users_know() {
        let catalog = Catalog::built_in();
        let names: Vec<_> = catalog
            .categories
            .iter()
            .flat_map(|c| {
                c.agents
                    .iter()
                    .map(move |a| (c.category.as_str(), a.agent_name.as_str()))
            })
            .collect();
        assert_eq!(
            names,
            [
                ("test_generation", "MagdiCreator"),
                ("test_generation", "MagdiPartner"),
                ("qa_info", "MagdiSage"),
                ("test_planning", "MagdiWriter"),
                ("log_analysis", "MagdiAnalyzer"),
            ]
        );
        assert_eq!(
            catalog
                .category("test_generation")
                .unwrap()
                .default_agent()
                .agent_name,
            "MagdiCreator"
        );
    }

    #[test]
    fn a_broken_catalog_names_its_line() {
        let err = Catalog::parse("[[categories]]\ncategory = \"x\"\ntitle = 3\n", "test.toml")
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("test.toml, line 3"), "{text}");
    }

    #[test]
    fn a_bad_assistant_id_is_refused() {
        let toml = "[[categories]]\ncategory = \"x\"\ntitle = \"X\"\n[[categories.agents]]\n\
                    assistant_id = \"bot-1\"\nagent_name = \"A\"\nsystem_prompt = \"p\"\n";
        let err = Catalog::parse(toml, "t.toml").unwrap_err();
        assert!(format!("{err:#}").contains("asst_"));
    }
}
