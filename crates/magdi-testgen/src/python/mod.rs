//! Python: finds the importable modules of the workspace and writes a pytest module for each.

mod doctest;
mod emit;
mod lex;
mod literal;
mod names;
mod scan;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::{GeneratedFile, ModuleReport, SourceFile, Status, limits};
use doctest::Flags;
use emit::ModuleContext;

/// Folders that hold tests, tooling or copies of other code, never the library itself.
const ALWAYS_SKIPPED_DIRS: [&str; 11] = [
    "__pycache__",
    "node_modules",
    "site-packages",
    "venv",
    "tests",
    "test",
    "testing",
    "magdi_generated",
    "build",
    "dist",
    "__MACOSX",
];
/// Folders skipped unless they are packages (`docs/` rarely is, `mypkg/tools/` may be).
const NON_PACKAGE_SKIPPED_DIRS: [&str; 11] = [
    "docs",
    "doc",
    "examples",
    "example",
    "benchmarks",
    "bench",
    "scripts",
    "bin",
    "tools",
    "dev",
    "ci",
];
/// Files that are scripts or build helpers, which importing would run.
const SKIPPED_FILES: [&str; 11] = [
    "setup.py",
    "conftest.py",
    "noxfile.py",
    "fabfile.py",
    "tasks.py",
    "manage.py",
    "versioneer.py",
    "__main__.py",
    "pavement.py",
    "dodo.py",
    "conf.py",
];
const PROJECT_MARKERS: [&str; 3] = ["pyproject.toml", "setup.py", "setup.cfg"];

#[derive(Debug, Clone)]
struct Module {
    name: String,
    path: String,
    /// The folder that goes on sys.path for `name` to import, or for a package imported under
    /// an alias, the package's own folder.
    root: String,
    /// The name a package folder is imported under when its folder name cannot be imported
    /// (the workspace root itself, or `proj-main/`): see [`Layout::aliases`].
    alias: Option<String>,
    is_package: bool,
    scan: scan::ModuleScan,
    too_big: bool,
}

pub struct Output {
    pub files: Vec<GeneratedFile>,
    pub modules: Vec<ModuleReport>,
    pub notes: Vec<String>,
}

pub fn generate(files: &[SourceFile]) -> Output {
    let mut out = Output {
        files: Vec::new(),
        modules: Vec::new(),
        notes: Vec::new(),
    };
    let layout = Layout::new(files);
    let mut modules = layout.modules(files, &mut out.notes);
    if modules.is_empty() {
        return out;
    }
    if modules.len() > limits::MAX_MODULES {
        out.notes.push(format!(
            "Only the first {} of {} Python modules were covered.",
            limits::MAX_MODULES,
            modules.len()
        ));
        modules.truncate(limits::MAX_MODULES);
    }
    let by_name: BTreeMap<&str, &Module> = modules.iter().map(|m| (m.name.as_str(), m)).collect();
    let local_tops = layout.local_tops(&modules);

    // One test folder per project, holding a conftest that puts that project's roots first.
    let mut projects: BTreeMap<String, ProjectRoots> = BTreeMap::new();
    for m in &modules {
        let entry = projects.entry(project_dir(&m.root)).or_default();
        match &m.alias {
            Some(alias) => {
                entry.aliases.insert(alias.clone(), m.root.clone());
            }
            None => {
                entry.roots.insert(m.root.clone());
            }
        }
    }
    for (dir, alias) in &layout.aliases {
        if modules.iter().any(|m| m.alias.as_ref() == Some(alias)) {
            let what = if dir.is_empty() {
                "The workspace root is itself a Python package (it holds `__init__.py`)".to_string()
            } else {
                format!("`{dir}/` is a Python package whose folder name cannot be imported")
            };
            out.notes.push(format!(
                "{what}: the generated tests import it as `{alias}`, through their conftest.py."
            ));
        }
    }
    let mut used_names = BTreeSet::new();
    for (project, roots) in &projects {
        let tests_dir = join(project, "tests/magdi_generated");
        let flags = project_flags(files, project);
        let namespace = doctest_namespace(files, project, &local_tops);
        let mut wrote_any = false;
        for m in modules.iter().filter(|m| &project_dir(&m.root) == project) {
            let deps = dependencies(m, &by_name, &local_tops);
            let mut test_name = format!("test_magdi_{}", m.name.replace('.', "_"));
            while !used_names.insert(test_name.clone()) {
                test_name.push('_');
            }
            let test_path = format!("{tests_dir}/{test_name}.py");
            let (report, file) = module_tests(m, &deps, flags, &namespace, &test_path);
            if let Some(content) = file {
                out.files.push(GeneratedFile {
                    path: test_path,
                    content,
                });
                wrote_any = true;
            }
            out.modules.push(report);
        }
        if wrote_any {
            out.files.push(GeneratedFile {
                path: format!("{tests_dir}/conftest.py"),
                content: conftest(project, roots),
            });
            out.files.push(GeneratedFile {
                path: format!("{tests_dir}/pytest.ini"),
                content: PYTEST_INI.to_string(),
            });
        }
    }
    out
}

const PYTEST_INI: &str = "\
# Generated offline by Magdi. Makes this folder its own pytest root when it is run directly
# (`python3 -m pytest <this folder>`), so the project's pytest options and plugins (coverage,
# xdist, doctest collection) do not apply to the generated tests.
[pytest]
";

fn conftest(project: &str, found: &ProjectRoots) -> String {
    let mut out = String::from(
        "# Generated offline by Magdi's builtin model.\n\
         # Makes the project's code importable from this workspace (not an installed copy), so the\n\
         # generated tests run without an install step.\n\
         import os\n\
         import sys\n",
    );
    if !found.aliases.is_empty() {
        out.push_str("import importlib.util\n");
    }
    out.push_str("\n_HERE = os.path.dirname(os.path.abspath(__file__))\n");
    if !found.roots.is_empty() {
        let mut rel: Vec<String> = found
            .roots
            .iter()
            .map(|r| relative_parts(project, r))
            .collect();
        rel.sort();
        out.push_str(&format!(
            "\n# The import roots go first on sys.path.\n\
             for _parts in reversed([{}]):\n\
             \x20   _root = os.path.normpath(os.path.join(_HERE, *_parts))\n\
             \x20   if _root in sys.path:\n\
             \x20       sys.path.remove(_root)\n\
             \x20   sys.path.insert(0, _root)\n",
            rel.join(", ")
        ));
    }
    if !found.aliases.is_empty() {
        let entries: Vec<String> = found
            .aliases
            .iter()
            .map(|(name, dir)| {
                format!(
                    "{}: {}",
                    crate::pystr::py_str(name),
                    relative_parts(project, dir)
                )
            })
            .collect();
        out.push_str(&format!(
            "\n# Package folders whose own name cannot be imported (the workspace itself, or a folder\n\
             # such as `proj-main/`) are imported under these names, so that their relative imports work.\n\
             _PACKAGES = {{{}}}\n\
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
             \x20       sys.path.append(_folder)\n",
            entries.join(", ")
        ));
    }
    out
}

/// `dir` as a Python tuple of path parts relative to `project/tests/magdi_generated`.
fn relative_parts(project: &str, dir: &str) -> String {
    let sub = dir
        .strip_prefix(project)
        .unwrap_or(dir)
        .trim_start_matches('/');
    let mut parts = vec!["\"..\"".to_string(), "\"..\"".to_string()];
    parts.extend(
        sub.split('/')
            .filter(|s| !s.is_empty())
            .map(crate::pystr::py_str),
    );
    format!("({})", parts.join(", "))
}

/// How one project's generated tests find its code.
#[derive(Debug, Default)]
struct ProjectRoots {
    /// Folders put first on sys.path.
    roots: BTreeSet<String>,
    /// Package name to package folder, for packages imported under an alias.
    aliases: BTreeMap<String, String>,
}

/// The project folder a root belongs to: `src/` layouts keep their tests beside `src/`.
fn project_dir(root: &str) -> String {
    match root.rsplit_once('/') {
        Some((parent, "src")) => parent.to_string(),
        None if root == "src" => String::new(),
        _ => root.to_string(),
    }
}

fn join(dir: &str, rest: &str) -> String {
    if dir.is_empty() {
        rest.to_string()
    } else {
        format!("{dir}/{rest}")
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

fn basename(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, b)| b)
}

struct Layout {
    package_dirs: BTreeSet<String>,
    marker_dirs: BTreeSet<String>,
    /// Every `import x.y` / `from x.y import` target seen anywhere, to spot namespace packages.
    imported: BTreeSet<String>,
    /// The first name of every absolute import anywhere (`import x`, `from x.y import z`).
    absolute_tops: BTreeSet<String>,
    all_dirs_and_files: BTreeSet<String>,
    /// Package folders that cannot be imported by their own name, with the name they are
    /// imported under: the workspace root when it holds `__init__.py`, or a top folder such as
    /// `proj-main/` that a zip of a repository adds.
    aliases: BTreeMap<String, String>,
}

impl Layout {
    fn new(files: &[SourceFile]) -> Layout {
        let mut layout = Layout {
            package_dirs: BTreeSet::new(),
            marker_dirs: BTreeSet::new(),
            imported: BTreeSet::new(),
            absolute_tops: BTreeSet::new(),
            all_dirs_and_files: BTreeSet::new(),
            aliases: BTreeMap::new(),
        };
        for f in files {
            let name = basename(&f.path);
            if name == "__init__.py" {
                layout.package_dirs.insert(parent(&f.path).to_string());
            }
            if PROJECT_MARKERS.contains(&name) {
                layout.marker_dirs.insert(parent(&f.path).to_string());
            }
            layout.all_dirs_and_files.insert(f.path.clone());
            if f.path.ends_with(".py") && f.content.len() <= limits::MAX_FILE_BYTES {
                for line in f.content.lines() {
                    let line = line.trim_start();
                    let target = line
                        .strip_prefix("import ")
                        .or_else(|| line.strip_prefix("from "))
                        .and_then(|rest| rest.split([' ', ',', ';']).next());
                    if let Some(t) = target.filter(|t| t.contains('.') && !t.starts_with('.')) {
                        layout.imported.insert(t.to_string());
                    }
                    if let Some(first) = target
                        .filter(|t| !t.starts_with('.'))
                        .and_then(|t| t.split('.').next())
                        .filter(|t| is_identifier(t))
                    {
                        layout.absolute_tops.insert(first.to_string());
                    }
                }
            }
        }
        let tops: BTreeSet<String> = layout
            .package_dirs
            .iter()
            .map(|dir| layout.package_top(dir))
            .filter(|top| needs_alias(top))
            .collect();
        for top in tops {
            let name = layout.alias_name(&top, files);
            layout.aliases.insert(top, name);
        }
        layout
    }

    /// The outermost package folder of the chain of packages that `dir` (a package) sits in.
    fn package_top(&self, dir: &str) -> String {
        let mut top = dir.to_string();
        while !top.is_empty() && self.package_dirs.contains(parent(&top)) {
            // A stray `__init__.py` at the workspace root or in `proj-main/` does not make the
            // packages beside it subpackages when the code imports them by their own name.
            if needs_alias(parent(&top)) && self.absolute_tops.contains(basename(&top)) {
                break;
            }
            top = parent(&top).to_string();
        }
        top
    }

    /// Whether `name` is a module or package directly inside folder `dir`.
    fn has_child(&self, dir: &str, name: &str) -> bool {
        let child = join(dir, name);
        self.all_dirs_and_files.contains(&format!("{child}.py"))
            || self
                .all_dirs_and_files
                .range(format!("{child}/")..)
                .next()
                .is_some_and(|p| p.starts_with(&format!("{child}/")))
    }

    /// The name package folder `top` is imported under: the name its own code imports it by
    /// (`from mylib import util` inside it), else its folder name without a branch or version
    /// and with `_` for what a name cannot hold (`mylib` for `mylib-main`, `my_lib` for
    /// `my-lib`), else a fixed name.
    fn alias_name(&self, top: &str, files: &[SourceFile]) -> String {
        let taken = |name: &str| {
            crate::pydata::STDLIB.binary_search(&name).is_ok()
                || self.aliases.values().any(|a| a == name)
                || self.has_child(top, name)
        };
        let mut votes: BTreeMap<String, usize> = BTreeMap::new();
        let inside = files.iter().filter(|f| {
            (top.is_empty() || f.path.starts_with(&format!("{top}/")))
                && f.path.ends_with(".py")
                && f.content.len() <= limits::MAX_FILE_BYTES
        });
        for f in inside {
            for line in f.content.lines().map(str::trim_start) {
                for (package, child) in self_import(line) {
                    if self.has_child(top, &child) && !taken(&package) {
                        *votes.entry(package).or_default() += 1;
                    }
                }
            }
        }
        if let Some((name, _)) = votes.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))) {
            return name.clone();
        }
        // `mylib-main`, `mylib-1.2.0`: a branch or a version that a download adds.
        let words: Vec<&str> = basename(top)
            .split('-')
            .take_while(|w| {
                !w.starts_with(|c: char| c.is_ascii_digit())
                    && !matches!(*w, "main" | "master" | "develop" | "trunk")
            })
            .collect();
        let cleaned: String = words
            .join("_")
            .chars()
            .map(|c| if c.is_alphanumeric() { c } else { '_' })
            .collect();
        let mut name = if is_identifier(&cleaned) && !taken(&cleaned) {
            cleaned
        } else if top.is_empty() {
            "magdi_workspace".to_string()
        } else {
            let cleaned: String = basename(top)
                .chars()
                .map(|c| if c.is_alphanumeric() { c } else { '_' })
                .collect();
            format!("pkg_{cleaned}")
        };
        while taken(&name) {
            name.push('_');
        }
        name
    }

    fn skipped(&self, path: &str) -> bool {
        let name = basename(path);
        if !name.ends_with(".py") || SKIPPED_FILES.contains(&name) {
            return true;
        }
        let stem = &name[..name.len() - 3];
        if stem.starts_with("test_") || stem.ends_with("_test") || !is_identifier(stem) {
            return true;
        }
        let mut dir = String::new();
        for part in path.split('/').take(path.split('/').count() - 1) {
            dir = join(&dir, part);
            if part.starts_with('.')
                || ALWAYS_SKIPPED_DIRS.contains(&part)
                || part.ends_with(".egg-info")
            {
                return true;
            }
            if NON_PACKAGE_SKIPPED_DIRS.contains(&part) && !self.package_dirs.contains(&dir) {
                return true;
            }
        }
        false
    }

    fn modules(&self, files: &[SourceFile], notes: &mut Vec<String>) -> Vec<Module> {
        let mut found: Vec<Module> = Vec::new();
        let mut names = BTreeSet::new();
        let mut sorted: Vec<&SourceFile> =
            files.iter().filter(|f| !self.skipped(&f.path)).collect();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        for f in sorted {
            let Some((root, name, alias)) = self.module_name(&f.path) else {
                continue;
            };
            if !names.insert(name.clone()) {
                notes.push(format!(
                    "`{}` was skipped: module `{name}` is already defined elsewhere.",
                    f.path
                ));
                continue;
            }
            let too_big = f.content.len() > limits::MAX_FILE_BYTES;
            let scan = if too_big {
                scan::ModuleScan::default()
            } else {
                scan::scan(&f.content)
            };
            found.push(Module {
                name,
                path: f.path.clone(),
                root,
                alias,
                is_package: basename(&f.path) == "__init__.py",
                scan,
                too_big,
            });
        }
        // Loose modules beside setup.py are build helpers when the project has packages.
        let package_projects: BTreeSet<String> = found
            .iter()
            .filter(|m| m.name.contains('.') || m.is_package)
            .map(|m| project_dir(&m.root))
            .collect();
        found.retain(|m| {
            let loose_at_marker =
                !m.name.contains('.') && !m.is_package && self.marker_dirs.contains(&m.root);
            !(loose_at_marker && package_projects.contains(&project_dir(&m.root)))
        });
        found
    }

    /// The sys.path root and dotted name under which `path` imports, and the alias of its
    /// package when it is imported under one (the root is then the package's folder).
    fn module_name(&self, path: &str) -> Option<(String, String, Option<String>)> {
        let dir = parent(path);
        let stem = basename(path).strip_suffix(".py")?;
        let package_top = self
            .package_dirs
            .contains(dir)
            .then(|| self.package_top(dir));
        if let Some(top) = package_top.as_ref().filter(|t| needs_alias(t)) {
            let alias = self.aliases.get(top)?;
            let rel = if top.is_empty() {
                path
            } else {
                path.strip_prefix(&format!("{top}/"))?
            };
            let rel = rel.strip_suffix(".py")?;
            let rel = rel.strip_suffix("/__init__").unwrap_or(rel);
            if rel == "__init__" {
                return Some((top.clone(), alias.clone(), Some(alias.clone())));
            }
            if !rel.split('/').all(is_identifier) {
                return None;
            }
            let name = format!("{alias}.{}", rel.replace('/', "."));
            return Some((top.clone(), name, Some(alias.clone())));
        }
        let mut top = package_top.unwrap_or_else(|| join(dir, stem));
        let mut root = parent(&top).to_string();
        // Namespace packages: folders without __init__.py that the code imports through.
        while !root.is_empty()
            && is_identifier(basename(&root))
            && !self.marker_dirs.contains(&root)
            && basename(&root) != "src"
            && !self.package_dirs.contains(&root)
        {
            let dotted = format!("{}.{}", basename(&root), basename(&top));
            let imported = self
                .imported
                .iter()
                .any(|i| i == &dotted || i.starts_with(&format!("{dotted}.")));
            if basename(parent(&root)) == "src" || imported {
                top = root.clone();
                root = parent(&root).to_string();
            } else {
                break;
            }
        }
        let rel = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .trim_start_matches('/');
        let rel = rel.strip_suffix(".py")?;
        let rel = rel.strip_suffix("/__init__").unwrap_or(rel);
        if rel == "__init__" || !rel.split('/').all(is_identifier) {
            return None;
        }
        Some((root, rel.replace('/', "."), None))
    }

    /// Top-level names that are this workspace's own code, never third-party packages.
    fn local_tops(&self, modules: &[Module]) -> BTreeSet<String> {
        let roots: BTreeSet<&str> = modules.iter().map(|m| m.root.as_str()).collect();
        let mut tops: BTreeSet<String> = modules
            .iter()
            .filter_map(|m| m.name.split('.').next())
            .map(str::to_string)
            .collect();
        for path in &self.all_dirs_and_files {
            for root in &roots {
                let rel = if root.is_empty() {
                    Some(path.as_str())
                } else {
                    path.strip_prefix(&format!("{root}/"))
                };
                if let Some(first) = rel.and_then(|r| r.split('/').next()) {
                    tops.insert(first.strip_suffix(".py").unwrap_or(first).to_string());
                }
            }
        }
        tops
    }
}

fn is_identifier(s: &str) -> bool {
    lex::is_identifier(s)
}

/// A package folder that cannot be imported by its folder name from its parent.
fn needs_alias(dir: &str) -> bool {
    dir.is_empty() || !is_identifier(basename(dir))
}

/// `(package, child)` pairs an import line names absolutely: `from p import a, b` gives
/// `(p, a)` and `(p, b)`; `import p.a` and `from p.a import x` give `(p, a)`.
fn self_import(line: &str) -> Vec<(String, String)> {
    let line = line.split('#').next().unwrap_or("");
    let mut out = Vec::new();
    if let Some(rest) = line.strip_prefix("from ") {
        let Some((module, names)) = rest.split_once(" import ") else {
            return out;
        };
        let mut parts = module.trim().split('.');
        let package = parts.next().unwrap_or("");
        if !is_identifier(package) {
            return out;
        }
        match parts.next() {
            Some(child) => out.push((package.to_string(), child.to_string())),
            None => {
                for name in names.split(',') {
                    let name = name.trim().trim_matches(['(', ')', '\\']).trim();
                    let name = name.split(" as ").next().unwrap_or("").trim();
                    if is_identifier(name) {
                        out.push((package.to_string(), name.to_string()));
                    }
                }
            }
        }
    } else if let Some(rest) = line.strip_prefix("import ") {
        for target in rest.split(',') {
            let target = target.split(" as ").next().unwrap_or("").trim();
            let mut parts = target.split('.');
            if let (Some(package), Some(child)) = (parts.next(), parts.next())
                && is_identifier(package)
            {
                out.push((package.to_string(), child.to_string()));
            }
        }
    }
    out
}

/// What importing a module drags in: third-party packages, and local modules that do
/// something at import.
#[derive(Debug, Default)]
struct Deps {
    third_party: BTreeSet<String>,
    side_effects: Vec<String>,
    python2: Option<String>,
}

fn dependencies(
    start: &Module,
    by_name: &BTreeMap<&str, &Module>,
    local_tops: &BTreeSet<String>,
) -> Deps {
    let mut deps = Deps::default();
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::new();
    // Importing `a.b.c` runs `a/__init__.py` and `a/b/__init__.py` first.
    for prefix in prefixes(&start.name) {
        queue.push_back(prefix);
    }
    while let Some(name) = queue.pop_front() {
        if !seen.insert(name.clone()) || seen.len() > limits::MAX_MODULES {
            continue;
        }
        let Some(m) = by_name.get(name.as_str()) else {
            continue;
        };
        if m.scan.python2 && deps.python2.is_none() {
            deps.python2 = Some(m.name.clone());
        }
        for effect in &m.scan.side_effects {
            if m.name == start.name {
                deps.side_effects.push(effect.clone());
            } else {
                deps.side_effects
                    .push(format!("imports `{}`, which {effect}", m.name));
            }
        }
        for import in m.scan.imports.iter().filter(|i| !i.conditional) {
            let Some(target) = resolve(&m.name, m.is_package, &import.module) else {
                continue;
            };
            let top = target.split('.').next().unwrap_or("");
            if import.module.starts_with('.') || local_tops.contains(top) {
                for prefix in prefixes(&target) {
                    queue.push_back(prefix);
                }
                for n in &import.names {
                    queue.push_back(format!("{target}.{n}"));
                }
            } else if !top.is_empty() && crate::pydata::STDLIB.binary_search(&top).is_err() {
                deps.third_party.insert(top.to_string());
            }
        }
    }
    deps
}

fn prefixes(name: &str) -> Vec<String> {
    let parts: Vec<&str> = name.split('.').collect();
    (1..=parts.len()).map(|n| parts[..n].join(".")).collect()
}

/// Resolves a (possibly relative) import written in module `from` to an absolute name.
fn resolve(from: &str, is_package: bool, target: &str) -> Option<String> {
    let dots = target.len() - target.trim_start_matches('.').len();
    if dots == 0 {
        return Some(target.to_string());
    }
    let mut base: Vec<&str> = from.split('.').collect();
    if !is_package {
        base.pop();
    }
    for _ in 1..dots {
        base.pop()?;
    }
    let rest = &target[dots..];
    if !rest.is_empty() {
        base.push(rest);
    }
    (!base.is_empty()).then(|| base.join("."))
}

/// Doctest option flags the project enables for every example.
fn project_flags(files: &[SourceFile], project: &str) -> Flags {
    let mut flags = Flags::default();
    let inside = |path: &str| project.is_empty() || path.starts_with(&format!("{project}/"));
    for f in files
        .iter()
        .filter(|f| inside(&f.path) && f.content.len() <= limits::MAX_FILE_BYTES)
    {
        let name = basename(&f.path);
        if matches!(
            name,
            "setup.cfg" | "tox.ini" | "pytest.ini" | "pyproject.toml"
        ) {
            let mut in_option = false;
            for line in f.content.lines() {
                let starts_indented = line.starts_with([' ', '\t']);
                if line.trim_start().starts_with("doctest_optionflags") {
                    in_option = true;
                } else if !starts_indented {
                    in_option = false;
                }
                if in_option {
                    for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                        flags.apply(word);
                    }
                }
            }
        } else if name.ends_with(".py") {
            for flag in [
                "ELLIPSIS",
                "NORMALIZE_WHITESPACE",
                "IGNORE_EXCEPTION_DETAIL",
            ] {
                if f.content.contains(&format!("doctest.{flag}")) {
                    flags.apply(flag);
                }
            }
        }
    }
    // A project-wide SKIP would be odd; never let it hide every example.
    flags.skip = false;
    flags
}

/// Names a project's conftest.py puts into every doctest through pytest's `doctest_namespace`
/// fixture, with the code that binds each in a test. Only names taken from the project's own
/// modules or the standard library are kept; anything else cannot be rebuilt here.
fn doctest_namespace(
    files: &[SourceFile],
    project: &str,
    local_tops: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let inside = |path: &str| project.is_empty() || path.starts_with(&format!("{project}/"));
    for f in files
        .iter()
        .filter(|f| inside(&f.path) && basename(&f.path) == "conftest.py")
    {
        if f.content.len() > limits::MAX_FILE_BYTES || !f.content.contains("doctest_namespace[") {
            continue;
        }
        // Which import statement binds each name in the conftest.
        let mut imports: BTreeMap<String, (String, String)> = BTreeMap::new();
        for line in f.content.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("import ") {
                let rest = rest.split('#').next().unwrap_or("").trim();
                let (module, bound) = match rest.split_once(" as ") {
                    Some((m, alias)) => (m.trim(), alias.trim().to_string()),
                    None => (rest, rest.split('.').next().unwrap_or("").to_string()),
                };
                imports.insert(bound, (module.to_string(), line.to_string()));
            } else if let Some(rest) = line.strip_prefix("from ") {
                let Some((module, names)) = rest.split_once(" import ") else {
                    continue;
                };
                for name in names.split(',').map(|n| n.trim().trim_matches(['(', ')'])) {
                    let bound = name
                        .rsplit(" as ")
                        .next()
                        .unwrap_or(name)
                        .trim()
                        .to_string();
                    imports.insert(bound, (module.trim().to_string(), line.to_string()));
                }
            }
        }
        for line in f.content.lines().map(str::trim) {
            let Some(rest) = line.strip_prefix("doctest_namespace[") else {
                continue;
            };
            let Some((key, value)) = rest.split_once(']') else {
                continue;
            };
            let name = key.trim_matches(['"', '\'']);
            let Some(expr) = value.trim().strip_prefix('=').map(str::trim) else {
                continue;
            };
            if !is_identifier(name) || !expr.split('.').all(is_identifier) {
                continue;
            }
            let head = expr.split('.').next().unwrap_or("");
            let Some((module, import_line)) = imports.get(head) else {
                continue;
            };
            let top = module
                .trim_start_matches('.')
                .split('.')
                .next()
                .unwrap_or("");
            let known =
                local_tops.contains(top) || crate::pydata::STDLIB.binary_search(&top).is_ok();
            if module.starts_with('.') || !known || import_line.contains('(') {
                continue;
            }
            let code = if expr == name {
                import_line.clone()
            } else {
                format!("{import_line}\n{name} = {expr}")
            };
            out.insert(name.to_string(), code);
        }
    }
    out
}

fn module_tests(
    m: &Module,
    deps: &Deps,
    flags: Flags,
    namespace: &BTreeMap<String, String>,
    test_path: &str,
) -> (ModuleReport, Option<String>) {
    let mut report = ModuleReport {
        language: "Python",
        module: m.name.clone(),
        source: m.path.clone(),
        test_file: None,
        found: 0,
        asserted: 0,
        steps: 0,
        left_out: Vec::new(),
        status: Status::Tested,
        needs: deps.third_party.iter().cloned().collect(),
    };
    let why_not = if m.too_big {
        Some(format!("is larger than {} bytes", limits::MAX_FILE_BYTES))
    } else if let Some(py2) = &deps.python2 {
        Some(if py2 == &m.name {
            "uses Python 2 syntax".to_string()
        } else {
            format!("imports `{py2}`, which uses Python 2 syntax")
        })
    } else {
        deps.side_effects
            .first()
            .map(|e| format!("probably has side effects at import: {e}"))
    };
    if let Some(why) = why_not {
        report.status = Status::LeftOut(why);
        return (report, None);
    }

    let ctx = ModuleContext {
        module: &m.name,
        top_names: &m.scan.top_names,
        dynamic_names: m.scan.dynamic_names,
        flags,
        namespace,
        printing: &m.scan.printing,
    };
    let mut functions = Vec::new();
    let mut uses_re = false;
    let mut uses_printed = false;
    let mut test_names = BTreeSet::new();
    let mut budget = limits::MAX_EXAMPLES_PER_MODULE;
    for doc in &m.scan.docstrings {
        let examples = match doctest::parse(&doc.text) {
            Ok(e) => e,
            Err(doctest::Malformed(why)) => {
                let n = doc.text.matches(">>>").count();
                report.found += n;
                report.left_out.extend(std::iter::repeat_n(
                    format!("sits in a docstring doctest cannot read ({why})"),
                    n,
                ));
                continue;
            }
        };
        if examples.is_empty() {
            continue;
        }
        if examples.len() > budget {
            report.found += examples.len();
            report.left_out.extend(std::iter::repeat_n(
                "is past the generator's per-module limit".to_string(),
                examples.len(),
            ));
            continue;
        }
        budget -= examples.len();
        let (base, title) = match &doc.qualname {
            Some(q) => (
                format!("test_{}", ascii_ident(q)),
                format!("Docstring examples of `{q}` (line {}).", doc.line),
            ),
            None => (
                "test_module_docstring".to_string(),
                "Examples in the module docstring.".to_string(),
            ),
        };
        let mut name = base.clone();
        let mut n = 2;
        while !test_names.insert(name.clone()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        let t = emit::translate(&name, &title, &examples, &ctx);
        report.found += t.found;
        report.asserted += t.asserted;
        report.steps += t.steps;
        report.left_out.extend(t.left_out);
        uses_re |= t.uses_re;
        uses_printed |= t.uses_printed;
        functions.extend(t.code);
    }
    report.left_out.extend(std::iter::repeat_n(
        "sits in a docstring with an escape the generator cannot decode".to_string(),
        m.scan.undecodable_docstrings,
    ));

    let mut code = header(&report);
    code.push_str("import importlib\n");
    if uses_re {
        code.push_str("import re\n");
    }
    code.push_str("\nimport pytest\n\n");
    for dep in &deps.third_party {
        code.push_str(&format!(
            "pytest.importorskip({})  # `{}` needs this third-party package\n",
            crate::pystr::py_str(dep),
            m.name
        ));
    }
    if !deps.third_party.is_empty() {
        code.push('\n');
    }
    code.push_str(&format!(
        "\ndef test_module_imports():\n    \"\"\"The module imports without error.\"\"\"\n    module = importlib.import_module({name})\n    assert module.__name__ == {name}\n",
        name = crate::pystr::py_str(&m.name)
    ));
    if uses_printed {
        code.push_str("\n\n");
        code.push_str(emit::PRINTED_HELPER);
    }
    for f in functions {
        code.push_str("\n\n");
        code.push_str(&f);
    }
    report.test_file = Some(test_path.to_string());
    (report, Some(code))
}

fn ascii_ident(qualname: &str) -> String {
    qualname
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn header(r: &ModuleReport) -> String {
    let mut out = format!(
        "# Generated offline by Magdi's builtin model (no LLM) from {} (module `{}`).\n",
        r.source, r.module
    );
    out.push_str(&format!(
        "# Docstring examples: {} found, {} turned into assertions, {} run as steps, {} left out.\n",
        r.found,
        r.asserted,
        r.steps,
        r.left_out.len()
    ));
    for (reason, count) in crate::grouped(&r.left_out)
        .into_iter()
        .take(limits::MAX_REASON_LINES)
    {
        out.push_str(&format!(
            "#   {count} left out: {}\n",
            reason.replace('\n', " ")
        ));
    }
    out
}

#[cfg(test)]
mod tests;
