"""Runs schemathesis's command line (`st`), after one preparation.

Hypothesis describes each filter function it is given by parsing the source
file that holds it. For the filters in schemathesis's coverage phase that file
is large, and CPython 3.11 before 3.11.8 can fail such a parse with
"SystemError: AST constructor recursion depth mismatch" when it happens deep
in the stack (a CPython bug, fixed upstream): which request triggers it first
depends on the order of the API's operations, so any change to the spec can
bring it on. Parsing that file once here, near the bottom of the stack, fills
the cache Hypothesis looks in first. The cache is per thread, so the run uses
one worker (the main thread); nothing else about the run changes.
"""

import ast
import inspect
import sys

from hypothesis.internal import lambda_sources
from schemathesis.cli import schemathesis
from schemathesis.specs.openapi.coverage import _schema

lines, _ = inspect.findsource(_schema)
lambda_sources.AST_LAMBDAS_CACHE[tuple(lines)] = lambda_sources.extract_all_lambdas(
    ast.parse("".join(lines))
)

if __name__ == "__main__":
    sys.argv[0] = "st"
    sys.exit(schemathesis())
