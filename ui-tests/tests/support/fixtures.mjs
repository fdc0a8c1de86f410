// What the tests hand to Magdi: a tiny Python package whose docstring carries
// an example, so the agent has something it can test without guessing.

import { makeZip } from './zip.mjs';

export const PACKAGE_FILE = 'mathlib/__init__.py';

const PACKAGE_SOURCE = `"""Small arithmetic helpers."""


def add(a, b):
    """Return the sum of a and b.

    >>> add(2, 3)
    5
    """
    return a + b
`;

export function pythonPackageZip() {
  return {
    name: 'mathlib.zip',
    mimeType: 'application/zip',
    buffer: makeZip({ [PACKAGE_FILE]: PACKAGE_SOURCE }),
  };
}
