use super::*;

fn file(path: &str, content: &str) -> SourceFile {
    SourceFile {
        path: path.into(),
        content: content.into(),
    }
}

fn names(files: &[SourceFile]) -> Vec<(String, String)> {
    let layout = Layout::new(files);
    layout
        .modules(files, &mut Vec::new())
        .into_iter()
        .map(|m| (m.root, m.name))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn a_flat_layout_imports_from_the_project_folder_and_skips_setup_and_tests() {
    let files = [
        file("setup.py", "setup()"),
        file("pkg/__init__.py", ""),
        file("pkg/core.py", ""),
        file("pkg/tests/test_core.py", ""),
        file("tests/test_pkg.py", ""),
        file("docs/conf.py", ""),
    ];
    assert_eq!(names(&files), pairs(&[("", "pkg"), ("", "pkg.core")]));
}

#[test]
fn a_src_layout_inside_a_zip_top_folder_imports_from_src() {
    let files = [
        file("proj-1.0/pyproject.toml", ""),
        file("proj-1.0/src/proj/__init__.py", ""),
        file("proj-1.0/src/proj/util.py", ""),
        file("proj-1.0/build/lib/proj/__init__.py", ""),
    ];
    assert_eq!(
        names(&files),
        pairs(&[("proj-1.0/src", "proj"), ("proj-1.0/src", "proj.util")])
    );
}

#[test]
fn several_packages_side_by_side_share_one_root() {
    let files = [
        file("alpha/__init__.py", ""),
        file("beta/__init__.py", ""),
        file("beta/b.py", ""),
    ];
    assert_eq!(
        names(&files),
        pairs(&[("", "alpha"), ("", "beta"), ("", "beta.b")])
    );
}

#[test]
fn namespace_packages_without_init_are_found_under_src_and_by_their_imports() {
    let files = [
        file("src/acme/tools/__init__.py", ""),
        file("src/acme/plain.py", ""),
        file(
            "lib2/corp/widgets/__init__.py",
            "from corp.widgets import x\n",
        ),
    ];
    assert_eq!(
        names(&files),
        pairs(&[
            ("lib2", "corp.widgets"),
            ("src", "acme.plain"),
            ("src", "acme.tools")
        ])
    );
}

#[test]
fn loose_modules_beside_setup_py_are_skipped_when_the_project_has_packages() {
    let files = [
        file("proj/setup.py", ""),
        file("proj/benchmark.py", "import timeit\n"),
        file("proj/pkg/__init__.py", ""),
        file("single/setup.py", ""),
        file("single/only.py", ""),
    ];
    assert_eq!(names(&files), pairs(&[("proj", "pkg"), ("single", "only")]));
}

#[test]
fn relative_imports_resolve_against_the_package() {
    assert_eq!(
        resolve("pkg.sub.mod", false, ".sibling"),
        Some("pkg.sub.sibling".into())
    );
    assert_eq!(resolve("pkg.sub", true, "..top"), Some("pkg.top".into()));
    assert_eq!(resolve("pkg", true, "..."), None);
}

fn generated(files: &[SourceFile]) -> Output {
    generate(files)
}

fn content<'a>(out: &'a Output, path: &str) -> &'a str {
    &out.files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no {path}"))
        .content
}

#[test]
fn a_module_gets_a_header_an_import_test_and_one_test_per_docstring() {
    let out = generated(&[
        file("proj/pyproject.toml", ""),
        file("proj/src/calc/__init__.py", ""),
        file(
            "proj/src/calc/ops.py",
            "\"\"\"Arithmetic.\n\n>>> add(2, 2)\n4\n\"\"\"\n\ndef add(a, b):\n    \"\"\"Adds.\n\n    >>> add(1, 2)\n    3\n    >>> add(1, 2)  # doctest: +SKIP\n    0\n    \"\"\"\n    return a + b\n",
        ),
    ]);
    let test = content(&out, "proj/tests/magdi_generated/test_magdi_calc_ops.py");
    assert_eq!(
        test,
        "# Generated offline by Magdi's builtin model (no LLM) from proj/src/calc/ops.py (module `calc.ops`).\n\
         # Docstring examples: 3 found, 2 turned into assertions, 0 run as steps, 1 left out.\n\
         #   1 left out: is marked `doctest: +SKIP`\n\
         import importlib\n\
         \n\
         import pytest\n\
         \n\
         \n\
         def test_module_imports():\n\
         \x20   \"\"\"The module imports without error.\"\"\"\n\
         \x20   module = importlib.import_module(\"calc.ops\")\n\
         \x20   assert module.__name__ == \"calc.ops\"\n\
         \n\
         \n\
         def test_module_docstring():\n\
         \x20   \"\"\"Examples in the module docstring.\"\"\"\n\
         \x20   from calc.ops import add\n\
         \x20   assert add(2, 2) == 4\n\
         \n\
         \n\
         def test_add():\n\
         \x20   \"\"\"Docstring examples of `add` (line 8).\"\"\"\n\
         \x20   from calc.ops import add\n\
         \x20   assert add(1, 2) == 3\n"
    );
    let conftest = content(&out, "proj/tests/magdi_generated/conftest.py");
    assert!(
        conftest.contains("for _parts in reversed([(\"..\", \"..\", \"src\")]):"),
        "{conftest}"
    );
    assert!(content(&out, "proj/tests/magdi_generated/pytest.ini").contains("[pytest]"));
    let report = out.modules.iter().find(|m| m.module == "calc.ops").unwrap();
    assert_eq!(
        (report.found, report.asserted, report.left_out.len()),
        (3, 2, 1)
    );
}

#[test]
fn a_missing_third_party_package_skips_the_module_and_its_importers_by_name() {
    let out = generated(&[
        file("app/__init__.py", ""),
        file(
            "app/config.py",
            "import yaml\ntry:\n    import ujson\nexcept ImportError:\n    ujson = None\n",
        ),
        file("app/main.py", "from .config import load\nimport os\n"),
    ]);
    let main = content(&out, "tests/magdi_generated/test_magdi_app_main.py");
    assert!(
        main.contains(
            "pytest.importorskip(\"yaml\")  # `app.main` needs this third-party package\n"
        )
    );
    assert!(!main.contains("ujson"));
    assert!(!content(&out, "tests/magdi_generated/test_magdi_app.py").contains("importorskip"));
}

#[test]
fn modules_with_import_side_effects_are_left_out_with_a_note() {
    let out = generated(&[
        file(
            "script.py",
            "import requests\nrequests.get('https://example.com')\n",
        ),
        file("runner.py", "def main():\n    pass\n\nmain()\n"),
        file(
            "safe.py",
            "def main():\n    pass\n\nif __name__ == '__main__':\n    main()\n",
        ),
        file("old.py", "print 'hello'\n"),
    ]);
    let status = |name: &str| {
        out.modules
            .iter()
            .find(|m| m.module == name)
            .unwrap()
            .status
            .clone()
    };
    assert!(matches!(status("script"), Status::LeftOut(why) if why.contains("network")));
    assert!(matches!(status("runner"), Status::LeftOut(why) if why.contains("`main(...)`")));
    assert!(matches!(status("old"), Status::LeftOut(why) if why.contains("Python 2")));
    assert_eq!(status("safe"), Status::Tested);
    let paths: Vec<&str> = out.files.iter().map(|f| f.path.as_str()).collect();
    assert!(paths.contains(&"tests/magdi_generated/test_magdi_safe.py"));
    assert!(
        !paths
            .iter()
            .any(|p| p.contains("runner") || p.contains("script"))
    );
}

#[test]
fn project_doctest_flags_and_namespace_come_from_its_config() {
    let files = [
        file(
            "p/setup.cfg",
            "[tool:pytest]\ndoctest_optionflags =\n    ELLIPSIS\n    NORMALIZE_WHITESPACE\n[flake8]\nmax-line-length = 99\n",
        ),
        file(
            "p/tests/conftest.py",
            "import pkg\nimport os\n\n@pytest.fixture(autouse=True)\ndef ns(doctest_namespace):\n    doctest_namespace[\"pkg\"] = pkg\n    doctest_namespace['path'] = os.path\n    doctest_namespace['np'] = numpy\n",
        ),
        file("p/pkg/__init__.py", ""),
    ];
    let flags = project_flags(&files, "p");
    assert!(flags.ellipsis && flags.normalize_whitespace && !flags.ignore_exception_detail);
    let tops = BTreeSet::from(["pkg".to_string()]);
    let ns = doctest_namespace(&files, "p", &tops);
    assert_eq!(ns.get("pkg").map(String::as_str), Some("import pkg"));
    assert_eq!(
        ns.get("path").map(String::as_str),
        Some("import os\npath = os.path")
    );
    assert!(!ns.contains_key("np"));
}

#[test]
fn test_file_names_are_unique_and_never_clash_with_project_tests() {
    let out = generated(&[file("a/b.py", ""), file("a_b.py", "")]);
    let mut paths: Vec<&str> = out.files.iter().map(|f| f.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        vec![
            "a/tests/magdi_generated/conftest.py",
            "a/tests/magdi_generated/pytest.ini",
            "a/tests/magdi_generated/test_magdi_b.py",
            "tests/magdi_generated/conftest.py",
            "tests/magdi_generated/pytest.ini",
            "tests/magdi_generated/test_magdi_a_b.py",
        ]
    );
}

#[test]
fn a_workspace_that_is_itself_a_package_is_imported_under_an_alias() {
    let files = [
        file("__init__.py", ""),
        file("core.py", "from . import util\n"),
        file("util.py", ""),
        file("sub/__init__.py", ""),
        file("sub/deep.py", "from ..util import x\n"),
    ];
    assert_eq!(
        names(&files),
        pairs(&[
            ("", "magdi_workspace"),
            ("", "magdi_workspace.core"),
            ("", "magdi_workspace.sub"),
            ("", "magdi_workspace.sub.deep"),
            ("", "magdi_workspace.util"),
        ])
    );
}

#[test]
fn a_zip_top_folder_that_is_a_package_takes_the_name_its_code_imports_it_by() {
    let by_import = [
        file("project-main/__init__.py", ""),
        file("project-main/core.py", "from coolname import util\n"),
        file("project-main/util.py", ""),
    ];
    assert_eq!(
        names(&by_import),
        pairs(&[
            ("project-main", "coolname"),
            ("project-main", "coolname.core"),
            ("project-main", "coolname.util"),
        ])
    );
    // Without such an import: the folder name up to the first character a name cannot hold.
    let by_folder = [
        file("mylib-1.0/__init__.py", ""),
        file(
            "mylib-1.0/core.py",
            "from .util import x\nimport json.decoder\n",
        ),
        file("mylib-1.0/util.py", ""),
    ];
    assert_eq!(
        names(&by_folder),
        pairs(&[
            ("mylib-1.0", "mylib"),
            ("mylib-1.0", "mylib.core"),
            ("mylib-1.0", "mylib.util"),
        ])
    );
    let dashed = [
        file("my-lib-main/__init__.py", ""),
        file("2048-game/__init__.py", ""),
    ];
    assert_eq!(
        names(&dashed),
        pairs(&[("2048-game", "pkg_2048_game"), ("my-lib-main", "my_lib")])
    );
}

#[test]
fn a_stray_init_at_the_root_does_not_swallow_a_package_imported_by_its_own_name() {
    let files = [
        file("__init__.py", ""),
        file("setup.py", ""),
        file("mypkg/__init__.py", "from mypkg import core\n"),
        file("mypkg/core.py", ""),
    ];
    assert_eq!(
        names(&files),
        pairs(&[("", "magdi_workspace"), ("", "mypkg"), ("", "mypkg.core")])
    );
}

#[test]
fn an_aliased_package_gets_a_conftest_that_finds_it_by_that_name() {
    let out = generated(&[
        file("__init__.py", ""),
        file(
            "core.py",
            "from . import util\n\ndef twice(x):\n    \"\"\"\n    >>> twice(2)\n    4\n    \"\"\"\n    return util.double(x)\n",
        ),
        file("util.py", "def double(x):\n    return 2 * x\n"),
    ]);
    assert_eq!(
        out.notes,
        [
            "The workspace root is itself a Python package (it holds `__init__.py`): the generated \
          tests import it as `magdi_workspace`, through their conftest.py."
        ]
    );
    let test = content(
        &out,
        "tests/magdi_generated/test_magdi_magdi_workspace_core.py",
    );
    assert!(
        test.contains("    from magdi_workspace.core import twice\n    assert twice(2) == 4\n"),
        "{test}"
    );
    assert_eq!(
        content(&out, "tests/magdi_generated/conftest.py"),
        "# Generated offline by Magdi's builtin model.\n\
         # Makes the project's code importable from this workspace (not an installed copy), so the\n\
         # generated tests run without an install step.\n\
         import os\n\
         import sys\n\
         import importlib.util\n\
         \n\
         _HERE = os.path.dirname(os.path.abspath(__file__))\n\
         \n\
         # Package folders whose own name cannot be imported (the workspace itself, or a folder\n\
         # such as `proj-main/`) are imported under these names, so that their relative imports work.\n\
         _PACKAGES = {\"magdi_workspace\": (\"..\", \"..\")}\n\
         \n\
         \n\
         class _PackageFolders:\n\
         \x20   \"\"\"Finds the packages above by name, before any installed package.\"\"\"\n\
         \n\
         \x20   @staticmethod\n\
         \x20   def find_spec(name, path=None, target=None):\n\
         \x20       parts = _PACKAGES.get(name)\n\
         \x20       if parts is None:\n\
         \x20           return None\n\
         \x20       folder = os.path.normpath(os.path.join(_HERE, *parts))\n\
         \x20       return importlib.util.spec_from_file_location(\n\
         \x20           name, os.path.join(folder, \"__init__.py\"), submodule_search_locations=[folder]\n\
         \x20       )\n\
         \n\
         \n\
         if _PackageFolders not in sys.meta_path:\n\
         \x20   sys.meta_path.insert(0, _PackageFolders)\n\
         # The folders also go last on sys.path, for plain `import sibling` between their modules.\n\
         for _parts in _PACKAGES.values():\n\
         \x20   _folder = os.path.normpath(os.path.join(_HERE, *_parts))\n\
         \x20   if _folder not in sys.path:\n\
         \x20       sys.path.append(_folder)\n"
    );
}

#[test]
fn a_module_that_prints_without_a_final_newline_gets_the_helper_doctest_needs() {
    let out = generated(&[file(
        "show.py",
        "def show(x):\n    \"\"\"\n    >>> show(1)\n    1\n    \"\"\"\n    print(x, end='')\n",
    )]);
    let test = content(&out, "tests/magdi_generated/test_magdi_show.py");
    assert!(
        test.contains(&format!(
            "\n\n{}\n\ndef test_show(capsys):",
            emit::PRINTED_HELPER
        )),
        "{test}"
    );
}
