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

fn reply_for(request: &Request) -> String {
    let context = &request.offline;
    match context.category.as_str() {
        "test_generation" => test_generation(request),
        "test_planning" => test_plan(last_user_message(request)),
        "log_analysis" => log_analysis(&context.workspace),
        _ => qa_answer(last_user_message(request)),
    }
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
            "- {count} lines mention an error or failure. The first ones:\n"
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
    use super::*;

    #[test]
    fn a_fence_outgrows_the_backticks_inside() {
        assert_eq!(fence_for("plain"), "```");
        assert_eq!(fence_for("a ``` b"), "````");
        assert_eq!(fence_for("`````"), "``````");
    }
}
