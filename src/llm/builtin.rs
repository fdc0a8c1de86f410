//! The offline model: deterministic replies with no network and no key, so a
//! fresh install works end to end. For test generation it runs Magdi's test
//! generator over the workspace; for the other categories it answers from
//! templates and says plainly what it is.

use std::fmt::Write as _;

use super::{DeltaSink, Reply, Request, Role, send_in_pieces};

const NOTICE: &str = "_This reply comes from Magdi's offline model (`builtin`). It needs no key and no \
network, and works from fixed rules rather than understanding. Ask your administrator to configure \
a model provider for full answers._";

pub async fn complete(request: Request, deltas: DeltaSink) -> Reply {
    let text = crate::blocking::run(move || reply_for(&request)).await;
    send_in_pieces(&text, &deltas);
    Reply { text, usage: None }
}

fn last_user_message(request: &Request) -> &str {
    request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map_or("", |m| m.content)
}

/// Tokens kept free at the end of a reply for the note that says what was
/// left out.
const NOTE_ROOM: u64 = 120;

/// The reply, at most `request.max_tokens` long as a model's would be, but
/// for generated tests: those cover every module of the workspace, in one
/// reply and so in one artifact, however many there are.
fn reply_for(request: &Request) -> String {
    let context = &request.offline;
    let text = match context.category.as_str() {
        "test_generation" => return test_generation(request),
        "test_planning" => test_plan(last_user_message(request)),
        "log_analysis" => log_analysis(&context.workspace),
        _ => qa_answer(last_user_message(request)),
    };
    cut_to_budget(text, u64::from(request.max_tokens))
}

/// `text` if it fits in `budget` tokens; else its longest start that ends
/// outside a code block and fits with a note saying the rest was left out.
/// A file block is never cut in two: it would become a truncated file.
fn cut_to_budget(text: String, budget: u64) -> String {
    use crate::llm::tokenizer::count;
    if count(&text) <= budget {
        return text;
    }
    let room = budget.saturating_sub(NOTE_ROOM);
    let mut used = 0;
    let mut fence: Option<&str> = None;
    let mut cut = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        used += count(line);
        if used > room {
            break;
        }
        offset += line.len();
        let trimmed = line.trim();
        let backticks = &trimmed[..trimmed.len() - trimmed.trim_start_matches('`').len()];
        match fence {
            None if backticks.len() >= 3 => fence = Some(backticks),
            Some(open) if trimmed == open => fence = None,
            _ => {}
        }
        if fence.is_none() {
            cut = offset;
        }
    }
    let mut out = text[..cut].trim_end().to_owned();
    let _ = write!(
        out,
        "\n\n_The rest of this reply was left out: a reply may have at most {budget} tokens on \
         this server._\n"
    );
    out
}

/// A fence longer than any run of backticks in `content`, so the block cannot
/// be closed early by the file's own text.
pub fn fence_for(content: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in content.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

fn language_of(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "py" => "python",
        "js" | "mjs" | "cjs" => "javascript",
        "ts" => "typescript",
        "rs" => "rust",
        "md" => "markdown",
        "toml" => "toml",
        "json" => "json",
        "ini" | "cfg" => "ini",
        _ => "text",
    }
}

/// Appends a file block in the convention agents use: ```lang path=...
pub fn push_file_block(out: &mut String, path: &str, content: &str) {
    let fence = fence_for(content);
    let _ = writeln!(out, "{fence}{} path={path}", language_of(path));
    out.push_str(content);
    if !content.ends_with('\n') {
        out.push('\n');
    }
    let _ = writeln!(out, "{fence}\n");
}

fn test_generation(request: &Request) -> String {
    let workspace = &request.offline.workspace;
    let mut out = String::new();
    out.push_str(NOTICE);
    out.push_str("\n\n");
    if workspace.is_empty() {
        out.push_str(
            "The workspace is empty, so there is nothing to test yet. Upload your project (a zip \
             of the repository, or its source files) and send your message again: I will write a \
             runnable test scaffold for the Python, JavaScript/TypeScript or Rust code I find.\n",
        );
        return out;
    }
    let report = magdi_testgen::generate(workspace);
    if report.files.is_empty() {
        out.push_str(&report.summary);
        if report.summary.is_empty() {
            out.push_str(
                "I found no Python, JavaScript/TypeScript or Rust source files that I can write \
                 tests for in the workspace.\n",
            );
        }
        return out;
    }
    out.push_str(&report.summary);
    out.push_str("\n\n");
    for file in &report.files {
        push_file_block(&mut out, &file.path, &file.content);
    }
    out
}

fn test_plan(message: &str) -> String {
    let subject = message.lines().next().unwrap_or("").trim();
    let subject = if subject.is_empty() {
        "the feature under test"
    } else {
        subject
    };
    let mut plan = String::new();
    let _ = writeln!(plan, "# Test plan\n\nSubject: {subject}\n");
    plan.push_str(
        "## Scope\n\n- In scope: the behaviour described above, its inputs, outputs and error handling.\n\
         - Out of scope: anything not named above; list it here explicitly.\n\n\
         ## Risks\n\n| Risk | Impact | Likelihood | Mitigation |\n|---|---|---|---|\n\
         | Wrong results on boundary values | High | Medium | Boundary value analysis |\n\
         | Invalid input accepted | High | Medium | Negative tests for each input |\n\
         | Regressions in neighbouring features | Medium | Medium | Automated regression suite in CI |\n\n\
         ## Approach\n\n- Unit tests for the rules and calculations.\n- API or integration tests for \
         each interface.\n- End-to-end tests for the main user journeys only.\n- Exploratory sessions \
         on the riskiest areas, time-boxed and written up.\n\n\
         ## Test cases\n\n| ID | Title | Steps | Expected result | Priority |\n|---|---|---|---|---|\n\
         | TC-1 | Happy path | Use the feature with typical valid input | The documented result | High |\n\
         | TC-2 | Empty input | Submit with every field empty | A clear validation message, nothing saved | High |\n\
         | TC-3 | Boundary values | Use the smallest and largest allowed values, and one beyond each | Accepted inside, refused outside | High |\n\
         | TC-4 | Invalid format | Enter values of the wrong type or format | A clear validation message | Medium |\n\
         | TC-5 | Repeat and concurrency | Submit the same action twice quickly | Processed once | Medium |\n\n\
         ## Entry and exit criteria\n\n- Entry: the build is deployed to the test environment and smoke tests pass.\n\
         - Exit: all high-priority cases pass; no open critical defects; known issues are documented.\n",
    );
    let mut out = String::new();
    out.push_str(NOTICE);
    out.push_str(
        "\n\nHere is a test plan skeleton to fill in with the details of your feature.\n\n",
    );
    push_file_block(&mut out, "TEST_PLAN.md", &plan);
    out
}

fn log_analysis(workspace: &[magdi_testgen::SourceFile]) -> String {
    let mut out = String::new();
    out.push_str(NOTICE);
    out.push_str("\n\n");
    if workspace.is_empty() {
        out.push_str("Upload a log file or a test report (JUnit XML, pytest or CI output) and I will point out the failures in it.\n");
        return out;
    }
    let markers = ["error", "fail", "exception", "traceback", "fatal", "panic"];
    let mut any = false;
    for file in workspace {
        let mut hits: Vec<(usize, &str)> = Vec::new();
        let mut count = 0usize;
        for (number, line) in file.content.lines().enumerate() {
            let lower = line.to_lowercase();
            if markers.iter().any(|m| lower.contains(m)) {
                count += 1;
                if hits.len() < 10 {
                    hits.push((number + 1, line));
                }
            }
        }
        let junit_failures =
            file.content.matches("<failure").count() + file.content.matches("<error").count();
        if count == 0 && junit_failures == 0 {
            continue;
        }
        any = true;
        let _ = writeln!(out, "### `{}`\n", file.path);
        if junit_failures > 0 {
            let _ = writeln!(
                out,
                "- {junit_failures} failed or errored test cases in the report."
            );
        }
        let _ = writeln!(
            out,
            "- {}\n",
            if count == 1 {
                "1 line mentions an error or failure:".to_owned()
            } else {
                format!("{count} lines mention an error or failure. The first ones:")
            }
        );
        out.push_str("```text\n");
        for (number, line) in hits {
            let line: String = line.chars().take(200).collect();
            let _ = writeln!(out, "{number:>6}: {line}");
        }
        out.push_str("```\n\n");
    }
    if !any {
        out.push_str(
            "I found no lines mentioning errors, failures or exceptions in the workspace's text files.\n",
        );
    }
    out
}

fn qa_answer(question: &str) -> String {
    let lower = question.to_lowercase();
    let topics: [(&[&str], &str); 5] = [
        (
            &["flaky", "intermittent"],
            "**Flaky tests.** Rerun the failing test alone and in the full suite to tell \
          ordering problems from timing problems. Look for shared state, fixed sleeps, real clocks, network calls \
          and unordered collections. Quarantine a flaky test with a ticket instead of retrying it silently.",
        ),
        (
            &["pyramid", "strategy"],
            "**Test strategy.** Put most checks in fast unit tests, fewer in integration \
          and API tests, and only the main journeys in end-to-end tests. Decide per risk, not per layer.",
        ),
        (
            &["boundary", "equivalence", "partition"],
            "**Test design.** Split inputs into equivalence classes, \
          test one value from each, and test both sides of every boundary (the limit, one inside, one outside).",
        ),
        (
            &["bug", "defect", "report"],
            "**Bug reports.** Give a one-line summary, exact steps, expected and \
          actual results, the environment and build, and evidence (logs, screenshots). One bug per report.",
        ),
        (
            &["automat", "framework", "selenium", "playwright", "cypress"],
            "**Automation.** Automate stable, \
          repeated and high-risk checks first; keep tests independent, give elements test ids, and run them on \
          every change in CI.",
        ),
    ];
    let mut out = String::new();
    out.push_str(NOTICE);
    out.push_str("\n\n");
    let matched: Vec<&str> = topics
        .iter()
        .filter(|(keys, _)| keys.iter().any(|k| lower.contains(k)))
        .map(|(_, text)| *text)
        .collect();
    if matched.is_empty() {
        out.push_str(
            "I can only give general guidance offline. For most testing questions: start from the risks \
             (what would hurt users most if it broke), cover them with the cheapest test that can catch the \
             problem, check boundaries and invalid input as well as the happy path, and keep tests \
             independent and repeatable.\n",
        );
    } else {
        for text in matched {
            out.push_str(text);
            out.push_str("\n\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::llm::tokenizer::count;
    use crate::llm::{History, Messages, OfflineContext, PromptMessage, Text, Window};

    fn request(category: &str, max_tokens: u32, workspace: Vec<(String, String)>) -> Request {
        let said = |role, text: &str| PromptMessage {
            role,
            content: Text::new(text),
        };
        Request {
            model: "builtin".into(),
            messages: Messages {
                system: said(Role::System, "You are a QA agent."),
                history: History::new(Arc::new(Window::default())),
                latest: said(Role::User, "tests for everything, please"),
            },
            max_tokens,
            offline: OfflineContext {
                category: category.into(),
                agent_name: "offline".into(),
                workspace: workspace
                    .into_iter()
                    .map(|(path, content)| magdi_testgen::SourceFile { path, content })
                    .collect(),
            },
        }
    }

    /// `modules` Python modules of ten small functions, each with an example.
    fn python_project(modules: usize) -> Vec<(String, String)> {
        (0..modules)
            .map(|m| {
                let functions: String = (0..10)
                    .map(|f| {
                        format!(
                            "def add_{f}(x):\n    \"\"\"\n    >>> add_{f}(1)\n    {}\n    \"\"\"\n    return x + {f}\n\n",
                            1 + f
                        )
                    })
                    .collect();
                (format!("src/mod{m}.py"), functions)
            })
            .collect()
    }

    /// The paths of the reply's file blocks, each checked to be closed.
    fn whole_file_blocks(reply: &str) -> Vec<String> {
        let mut paths = Vec::new();
        let mut open: Option<String> = None;
        for line in reply.lines() {
            match &open {
                None => {
                    if let Some((fence, path)) = line.split_once(" path=") {
                        let backticks = fence.len() - fence.trim_start_matches('`').len();
                        open = Some("`".repeat(backticks));
                        paths.push(path.to_owned());
                    }
                }
                Some(fence) if line == fence => open = None,
                Some(_) => {}
            }
        }
        assert!(open.is_none(), "a file block was left open:\n{reply}");
        paths
    }

    #[test]
    fn generated_tests_cover_every_module_whatever_the_reply_limit() {
        let project = python_project(60);
        let unlimited = reply_for(&request("test_generation", u32::MAX, project.clone()));
        let all = whole_file_blocks(&unlimited);
        assert!(all.len() >= 60, "{} files", all.len());
        assert!(count(&unlimited) > 8_000);
        let limited = reply_for(&request("test_generation", 4_000, project));
        assert_eq!(limited, unlimited);
    }

    #[test]
    fn any_reply_is_cut_to_the_limit_outside_code_blocks() {
        let log: String = (0..5_000)
            .map(|n| format!("2026-12-05 ERROR job {n} failed: connection refused\n"))
            .collect();
        let logs: Vec<(String, String)> = (0..200)
            .map(|n| (format!("logs/run{n}.log"), log.clone()))
            .collect();
        let whole = reply_for(&request("log_analysis", u32::MAX, logs.clone()));
        assert!(count(&whole) > 10_000, "{} tokens", count(&whole));
        let cut = reply_for(&request("log_analysis", 2_000, logs));
        assert!(count(&cut) <= 2_000, "{} tokens", count(&cut));
        assert!(whole.starts_with(cut.split("\n\n_The rest").next().unwrap()));
        assert!(cut.ends_with(
            "_The rest of this reply was left out: a reply may have at most 2000 tokens on this server._\n"
        ));
        assert_eq!(
            cut.matches("```").count() % 2,
            0,
            "no code block is left open"
        );

        let short = reply_for(&request(
            "log_analysis",
            2_000,
            vec![("a.log".into(), "ERROR x\n".into())],
        ));
        assert!(
            short.contains("- 1 line mentions an error or failure:"),
            "{short}"
        );
        assert!(!short.contains("left out"));
    }

    #[test]
    fn a_fence_outgrows_the_backticks_inside() {
        assert_eq!(fence_for("plain"), "```");
        assert_eq!(fence_for("a ``` b"), "````");
        assert_eq!(fence_for("`````"), "``````");
    }
}
