//! Replies rendered for the web UI: Markdown to HTML with code blocks
//! highlighted as `<span class="hl-...">` (so the UI's stylesheet colours them
//! for its light and dark themes), then sanitised, so that nothing a model
//! writes can run script in the user's browser.

use std::sync::OnceLock;

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd, html};
use syntect::html::{ClassStyle, ClassedHTMLGenerator};
use syntect::parsing::SyntaxSet;
use syntect::util::LinesWithEndings;

fn syntaxes() -> &'static SyntaxSet {
    static SYNTAXES: OnceLock<SyntaxSet> = OnceLock::new();
    SYNTAXES.get_or_init(SyntaxSet::load_defaults_newlines)
}

/// Code longer than this is shown plain: highlighting is for reading, and a
/// huge generated file should not cost seconds of CPU.
const MAX_HIGHLIGHTED_BYTES: usize = 200 * 1024;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The language word of a fence's info string (`python path=a.py` -> `python`).
fn language_of(info: &str) -> &str {
    info.split_whitespace()
        .next()
        .filter(|word| !word.contains('='))
        .unwrap_or("")
}

fn highlight(code: &str, language: &str) -> String {
    let syntaxes = syntaxes();
    let syntax = (!language.is_empty())
        .then(|| syntaxes.find_syntax_by_token(language))
        .flatten()
        .filter(|_| code.len() <= MAX_HIGHLIGHTED_BYTES);
    let class = if language.is_empty() {
        String::new()
    } else {
        format!(" class=\"language-{}\"", escape(language))
    };
    let Some(syntax) = syntax else {
        return format!("<pre><code{class}>{}</code></pre>\n", escape(code));
    };
    let mut generator = ClassedHTMLGenerator::new_with_class_style(
        syntax,
        syntaxes,
        ClassStyle::SpacedPrefixed { prefix: "hl-" },
    );
    for line in LinesWithEndings::from(code) {
        if generator
            .parse_html_for_line_which_includes_newline(line)
            .is_err()
        {
            return format!("<pre><code{class}>{}</code></pre>\n", escape(code));
        }
    }
    format!("<pre><code{class}>{}</code></pre>\n", generator.finalize())
}

fn options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS
}

/// Renders Markdown to sanitised HTML. CPU-bound: call from blocking code for
/// long texts.
pub fn to_html(markdown: &str) -> String {
    let mut events = Vec::new();
    let mut code: Option<(String, String)> = None;
    for event in Parser::new_ext(markdown, options()) {
        match (&mut code, event) {
            (None, Event::Start(Tag::CodeBlock(kind))) => {
                let language = match kind {
                    CodeBlockKind::Fenced(info) => language_of(&info).to_owned(),
                    CodeBlockKind::Indented => String::new(),
                };
                code = Some((language, String::new()));
            }
            (Some((_, text)), Event::Text(chunk)) => text.push_str(&chunk),
            (Some(_), Event::End(TagEnd::CodeBlock)) => {
                let (language, text) = code.take().unwrap_or_default();
                events.push(Event::Html(highlight(&text, &language).into()));
            }
            (Some(_), _) => {}
            (None, event) => events.push(event),
        }
    }
    let plain = events.iter().all(is_plain);
    let mut raw = String::with_capacity(markdown.len() * 2);
    html::push_html(&mut raw, events.into_iter());
    if plain {
        as_sanitised(raw)
    } else {
        sanitiser().clean(&raw).to_string()
    }
}

/// Whether pulldown-cmark writes this event's HTML itself, from text it
/// escapes: no markup, link or image of the reply's own, nothing the
/// sanitiser would remove. Most short replies are made only of these.
fn is_plain(event: &Event<'_>) -> bool {
    match event {
        Event::Text(_) | Event::Code(_) | Event::SoftBreak => true,
        Event::Start(tag) => match tag {
            Tag::Paragraph
            | Tag::BlockQuote(None)
            | Tag::List(_)
            | Tag::Item
            | Tag::Emphasis
            | Tag::Strong
            | Tag::Strikethrough => true,
            Tag::Heading {
                id, classes, attrs, ..
            } => id.is_none() && classes.is_empty() && attrs.is_empty(),
            _ => false,
        },
        Event::End(tag) => matches!(
            tag,
            TagEnd::Paragraph
                | TagEnd::BlockQuote(None)
                | TagEnd::List(_)
                | TagEnd::Item
                | TagEnd::Emphasis
                | TagEnd::Strong
                | TagEnd::Strikethrough
                | TagEnd::Heading(_)
        ),
        _ => false,
    }
}

/// HTML made only of plain events (`is_plain`), written as the sanitiser
/// writes it back: it leaves such HTML as it is but for how it escapes text
/// (quotes as themselves, no-break spaces as `&nbsp;`), so both ways give the
/// same bytes; the sanitiser parses the whole reply into a tree, which a
/// short reply need not pay for.
fn as_sanitised(html: String) -> String {
    if !html.contains("&quot;") && !html.contains('\u{a0}') {
        return html;
    }
    html.replace("&quot;", "\"").replace('\u{a0}', "&nbsp;")
}

/// The sanitiser's rules, built once.
fn sanitiser() -> &'static ammonia::Builder<'static> {
    static SANITISER: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    SANITISER.get_or_init(|| {
        let mut builder = ammonia::Builder::default();
        builder
            .add_tag_attributes("code", &["class"])
            .add_tag_attributes("span", &["class"])
            .add_tag_attributes("input", &["type", "checked", "disabled"])
            .add_tags(&["input"])
            // A reply must not make the browser fetch from other hosts.
            .rm_tags(&["img"])
            .link_rel(Some("noopener noreferrer nofollow"));
        builder
    })
}

#[cfg(test)]
mod tests {
    use super::{is_plain, options, sanitiser, to_html};

    #[test]
    fn plain_replies_skip_the_sanitiser_and_come_out_as_it_would_write_them() {
        let replies = [
            "Hello.",
            "Use `pytest -k add` to run \"just\" that test & see the <output>.",
            "# Plan\n\n## Steps\n\n1. *one*\n2. **two**\n   - ~~three~~\n\n> quoted\n> text",
            "a\u{a0}b 'single' \"double\" &amp; &lt;tag&gt; &#39; &copy;",
            "line one\nline two\n\n\n- a\n- b\n\n  continued",
            "Ünïcödé → ✓ 日本語 \u{1F600}",
            "",
            "   ",
        ];
        for reply in replies {
            // All but the inline HTML one take the short way.
            let plain = pulldown_cmark::Parser::new_ext(reply, options()).all(|e| is_plain(&e));
            assert_eq!(plain, !reply.contains("<output>"), "{reply:?}");
            let events = pulldown_cmark::Parser::new_ext(reply, options());
            let mut raw = String::new();
            pulldown_cmark::html::push_html(&mut raw, events);
            assert_eq!(
                to_html(reply),
                sanitiser().clean(&raw).to_string(),
                "{reply:?}"
            );
        }
    }

    #[test]
    fn scripts_do_not_survive() {
        let html = to_html(
            "hi <script>alert(1)</script> <img src=x onerror=alert(1)> [x](javascript:alert(1))",
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("onerror"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
    }

    #[test]
    fn code_blocks_are_highlighted_by_language() {
        let html = to_html("```python path=a.py\ndef f():\n    return 1\n```\n");
        assert!(html.contains("<code class=\"language-python\">"), "{html}");
        assert!(html.contains("<span class=\"hl-keyword"), "{html}");
        assert!(html.contains("hl-function"), "{html}");
    }

    #[test]
    fn unknown_languages_and_html_in_code_stay_plain_text() {
        let html = to_html("```nolang\n<b>bold</b>\n```\n");
        assert!(html.contains("&lt;b&gt;bold&lt;/b&gt;"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
    }
}
