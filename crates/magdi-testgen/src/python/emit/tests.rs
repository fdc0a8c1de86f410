use std::collections::{BTreeMap, BTreeSet};

use super::*;

fn generate_with(doc: &str, flags: Flags, namespace: &BTreeMap<String, String>) -> Translation {
    let examples = doctest::parse(doc).expect("docstring parses");
    let top: BTreeSet<String> = [
        "add",
        "Point",
        "parse",
        "ratio",
        "members",
        "greet",
        "Invalid",
        "show",
        "print_table",
    ]
    .map(String::from)
    .into();
    let printing: BTreeSet<String> = ["show".to_string()].into();
    let ctx = ModuleContext {
        module: "pkg.mod",
        top_names: &top,
        dynamic_names: false,
        flags,
        namespace,
        printing: &printing,
    };
    translate("test_f", "Docstring examples of `f`.", &examples, &ctx)
}

fn generate(doc: &str) -> Translation {
    generate_with(doc, Flags::default(), &BTreeMap::new())
}

fn code(doc: &str) -> String {
    generate(doc).code.expect("a test function")
}

const HEAD: &str = "def test_f():\n    \"\"\"Docstring examples of `f`.\"\"\"\n";
const CAPSYS_HEAD: &str = "def test_f(capsys):\n    \"\"\"Docstring examples of `f`.\"\"\"\n";

#[test]
fn a_literal_output_becomes_an_equality_with_the_module_name_imported() {
    assert_eq!(
        code(">>> add(1, 2)\n3\n"),
        format!("{HEAD}    from pkg.mod import add\n    assert add(1, 2) == 3\n")
    );
}

#[test]
fn an_operator_expression_is_parenthesized() {
    assert_eq!(
        code(">>> add(1, 2) + 1\n4\n"),
        format!("{HEAD}    from pkg.mod import add\n    assert (add(1, 2) + 1) == 4\n")
    );
}

#[test]
fn multi_line_statements_and_outputs_stay_together_in_one_function() {
    let doc = ">>> def pairs(n):\n...     return [(i, add(i, 1))\n...             for i in range(n)]\n>>> pairs(2)\n[(0, 1),\n (1, 2)]\n";
    assert_eq!(
        code(doc),
        format!(
            "{HEAD}    from pkg.mod import add\n    def pairs(n):\n        return [(i, add(i, 1))\n                for i in range(n)]\n    assert pairs(2) == [(0, 1),\n     (1, 2)]\n"
        )
    );
}

#[test]
fn names_bound_by_earlier_examples_are_not_imported() {
    let t = generate(">>> p = Point(1, 2)\n>>> q = p\n>>> q.x\n1\n");
    assert_eq!(
        t.code.unwrap(),
        format!(
            "{HEAD}    from pkg.mod import Point\n    p = Point(1, 2)\n    q = p\n    assert q.x == 1\n"
        )
    );
    assert_eq!((t.found, t.asserted, t.steps), (3, 1, 2));
}

#[test]
fn a_builtin_exception_is_asserted_with_its_message() {
    let doc = ">>> parse('x')\nTraceback (most recent call last):\n  ...\nValueError: bad value: 'x' (line 1)\n";
    assert_eq!(
        code(doc),
        format!(
            "{HEAD}    from pkg.mod import parse\n    with pytest.raises(ValueError, match=r\"^bad value: 'x' \\(line 1\\)$\"):\n        parse('x')\n"
        )
    );
}

#[test]
fn a_project_exception_is_matched_by_name_and_detail_can_be_ignored() {
    let doc = ">>> parse('x')  # doctest: +IGNORE_EXCEPTION_DETAIL\nTraceback (most recent call last):\npkg.errors.Invalid: whatever\n";
    assert_eq!(
        code(doc),
        format!(
            "{HEAD}    from pkg.mod import parse\n    with pytest.raises(Exception) as excinfo:\n        parse('x')\n    assert type(excinfo.value).__name__ == \"Invalid\"\n"
        )
    );
}

#[test]
fn sets_and_dicts_are_compared_as_values_not_text() {
    assert_eq!(
        code(">>> members()\n{'b', 'a'}\n>>> ratio()\n{'x': 1, 'y': [2]}\n"),
        format!(
            "{HEAD}    from pkg.mod import members, ratio\n    assert members() == {{'b', 'a'}}\n    assert ratio() == {{'x': 1, 'y': [2]}}\n"
        )
    );
}

#[test]
fn floats_are_compared_with_a_tolerance() {
    assert_eq!(
        code(">>> ratio(1, 3)\n0.3333333333333333\n>>> ratio([1, 2], 3)\n[0.333, 0.667]\n"),
        format!(
            "{HEAD}    from pkg.mod import ratio\n    assert ratio(1, 3) == pytest.approx(0.3333333333333333)\n    assert ratio([1, 2], 3) == pytest.approx([0.333, 0.667])\n"
        )
    );
}

#[test]
fn an_elided_output_is_matched_as_a_pattern_on_the_repr() {
    let t = generate(">>> Point(1, 2)\nPoint(x=1, ...)\n");
    assert!(t.uses_re);
    assert_eq!(
        t.code.unwrap(),
        format!(
            "{HEAD}    from pkg.mod import Point\n    assert re.fullmatch(r\"Point\\(x=1, .*\\)\", repr(Point(1, 2)), re.DOTALL)\n"
        )
    );
}

#[test]
fn an_object_repr_is_compared_as_text() {
    assert_eq!(
        code(">>> Point(1, 2)\nPoint(x=1, y=2)\n"),
        format!(
            "{HEAD}    from pkg.mod import Point\n    assert repr(Point(1, 2)) == \"Point(x=1, y=2)\"\n"
        )
    );
}

#[test]
fn normalize_whitespace_compares_whitespace_runs_as_one_space() {
    assert_eq!(
        code(">>> Point(1, 2)  # doctest: +NORMALIZE_WHITESPACE\nPoint(x=1,\n      y=2)\n"),
        format!(
            "{HEAD}    from pkg.mod import Point\n    assert \" \".join(repr(Point(1, 2)).split()) == \"Point(x=1, y=2)\"\n"
        )
    );
}

#[test]
fn printed_output_is_read_from_capsys() {
    assert_eq!(
        code(">>> x = 2\n>>> print(add(x, 1))\n3\n"),
        format!(
            "{CAPSYS_HEAD}    from pkg.mod import add\n    x = 2\n    capsys.readouterr()\n    print(add(x, 1))\n    assert _doctest_text(capsys.readouterr().out) == \"3\\n\"\n"
        )
    );
}

#[test]
fn prose_output_of_an_expression_is_checked_the_way_doctest_shows_it() {
    assert_eq!(
        code(">>> greet('ada')\nHello, ada!\n"),
        format!(
            "{CAPSYS_HEAD}    from pkg.mod import greet\n    _doctest_value = greet('ada')\n    _doctest_shown = _doctest_text(capsys.readouterr().out + (\"\" if _doctest_value is None else repr(_doctest_value) + \"\\n\"))\n    assert _doctest_shown == \"Hello, ada!\\n\"\n"
        )
    );
}

#[test]
fn true_and_false_become_truth_assertions() {
    assert_eq!(
        code(">>> members(1)\nTrue\n>>> members(2)\nFalse\n"),
        format!(
            "{HEAD}    from pkg.mod import members\n    assert members(1)\n    assert not members(2)\n"
        )
    );
}

#[test]
fn skipped_examples_are_counted_and_not_run() {
    let t = generate(">>> add(1, 2)  # doctest: +SKIP\n99\n>>> add(2, 2)\n4\n");
    assert_eq!(t.left_out, vec!["is marked `doctest: +SKIP`".to_string()]);
    assert_eq!(
        t.code.unwrap(),
        format!("{HEAD}    from pkg.mod import add\n    assert add(2, 2) == 4\n")
    );
}

#[test]
fn an_unknown_name_leaves_out_that_example_and_every_later_one() {
    let t = generate(">>> add(1, 1)\n2\n>>> mystery()\n1\n>>> add(2, 2)\n4\n");
    assert_eq!(t.asserted, 1);
    assert_eq!(
        t.left_out,
        vec![
            "reads `mystery`, which the module does not define".to_string(),
            "follows an example that was left out (reads `mystery`, which the module does not define)"
                .to_string(),
        ]
    );
}

#[test]
fn examples_without_any_output_do_not_make_a_test_that_cannot_fail() {
    let t = generate(">>> x = add(1, 2)\n>>> del x\n");
    assert_eq!(t.code, None);
    assert_eq!(t.asserted, 0);
    assert_eq!(t.left_out.len(), 2);
}

#[test]
fn values_shown_from_inside_a_loop_are_run_but_not_checked() {
    let t = generate(">>> for i in range(2):\n...     add(i, 1)\n1\n2\n>>> add(1, 1)\n2\n");
    assert_eq!(
        t.left_out,
        vec!["shows values from inside a block (run without a check)".to_string()]
    );
    assert_eq!(
        t.code.unwrap(),
        format!(
            "{HEAD}    from pkg.mod import add\n    for i in range(2):\n        add(i, 1)\n    assert add(1, 1) == 2\n"
        )
    );
}

#[test]
fn a_repr_of_a_class_defined_in_the_example_is_not_compared() {
    let t = generate(
        ">>> class Local:\n...     pass\n>>> Local()\n<pkg.mod.Local object at 0x...>\n>>> add(1, 1)\n2\n",
    );
    assert_eq!(t.asserted, 1);
    assert_eq!(t.left_out.len(), 1);
}

#[test]
fn a_builtin_rebound_after_being_read_is_imported_from_builtins() {
    assert_eq!(
        code(">>> list(add(1, 2) for _ in 'a')\n[3]\n>>> list = [1]\n"),
        format!(
            "{HEAD}    from pkg.mod import add\n    from builtins import list\n    assert list(add(1, 2) for _ in 'a') == [3]\n    list = [1]\n"
        )
    );
}

#[test]
fn allow_unicode_drops_python_2_string_prefixes_from_the_expected_text() {
    let flags = Flags {
        allow_unicode: true,
        ..Flags::default()
    };
    let t = generate_with(">>> Point('a')\nPoint(u'a')\n", flags, &BTreeMap::new());
    assert!(
        t.code
            .unwrap()
            .contains("assert repr(Point('a')) == \"Point('a')\"")
    );
}

#[test]
fn names_from_the_projects_doctest_namespace_are_bound_in_the_test() {
    let namespace = BTreeMap::from([("pkg".to_string(), "import pkg".to_string())]);
    let t = generate_with(">>> pkg.mod.add(1, 1)\n2\n", Flags::default(), &namespace);
    assert_eq!(
        t.code.unwrap(),
        format!(
            "{HEAD}    importlib.import_module(\"pkg.mod\")\n    import pkg\n    assert pkg.mod.add(1, 1) == 2\n"
        )
    );
}

#[test]
fn the_previous_result_underscore_cannot_be_used_in_a_function() {
    let t = generate(">>> add(1, 1)\n2\n>>> _ + 1\n3\n");
    assert_eq!(t.asserted, 1);
    assert!(t.left_out[0].contains("`_`"));
}

#[test]
fn a_multi_line_expression_with_prose_output_is_parenthesized() {
    assert_eq!(
        code(">>> greet(\n...     'ada')\nHello, ada!\n"),
        format!(
            "{CAPSYS_HEAD}    from pkg.mod import greet\n    _doctest_value = (\n        greet(\n            'ada')\n    )\n    _doctest_shown = _doctest_text(capsys.readouterr().out + (\"\" if _doctest_value is None else repr(_doctest_value) + \"\\n\"))\n    assert _doctest_shown == \"Hello, ada!\\n\"\n"
        )
    );
}

#[test]
fn printed_text_without_a_final_newline_is_compared_as_doctest_shows_it() {
    let t = generate(">>> print('a', end='')\na\n");
    assert!(t.uses_printed);
    assert_eq!(
        t.code.unwrap(),
        format!(
            "{CAPSYS_HEAD}    importlib.import_module(\"pkg.mod\")\n    print('a', end='')\n    assert _doctest_text(capsys.readouterr().out) == \"a\\n\"\n"
        )
    );
}

#[test]
fn a_literal_output_of_a_function_that_prints_is_checked_on_what_doctest_shows() {
    let t = generate(">>> show(1)\n1\n");
    assert!(t.uses_printed);
    assert_eq!(
        t.code.unwrap(),
        format!(
            "{CAPSYS_HEAD}    from pkg.mod import show\n    _doctest_value = show(1)\n    _doctest_shown = _doctest_text(capsys.readouterr().out + (\"\" if _doctest_value is None else repr(_doctest_value) + \"\\n\"))\n    assert _doctest_shown == \"1\\n\"\n"
        )
    );
}

#[test]
fn a_call_named_like_a_printer_or_a_stdout_write_shows_its_value_too() {
    assert_eq!(
        code(">>> import sys\n>>> sys.stdout.write('ab')\nab2\n>>> print_table([1])\n| 1 |\n"),
        format!(
            "{CAPSYS_HEAD}    from pkg.mod import print_table\n    import sys\n    capsys.readouterr()\n    _doctest_value = sys.stdout.write('ab')\n    _doctest_shown = _doctest_text(capsys.readouterr().out + (\"\" if _doctest_value is None else repr(_doctest_value) + \"\\n\"))\n    assert _doctest_shown == \"ab2\\n\"\n    capsys.readouterr()\n    _doctest_value = print_table([1])\n    _doctest_shown = _doctest_text(capsys.readouterr().out + (\"\" if _doctest_value is None else repr(_doctest_value) + \"\\n\"))\n    assert _doctest_shown == \"| 1 |\\n\"\n"
        )
    );
}

#[test]
fn a_function_an_example_defines_that_calls_a_printer_is_checked_on_what_doctest_shows() {
    assert_eq!(
        code(">>> def once(x):\n...     show(x)\n>>> once(1)\n1\n"),
        format!(
            "{CAPSYS_HEAD}    from pkg.mod import show\n    def once(x):\n        show(x)\n    capsys.readouterr()\n    _doctest_value = once(1)\n    _doctest_shown = _doctest_text(capsys.readouterr().out + (\"\" if _doctest_value is None else repr(_doctest_value) + \"\\n\"))\n    assert _doctest_shown == \"1\\n\"\n"
        )
    );
}
