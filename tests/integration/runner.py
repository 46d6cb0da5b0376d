# SPDX-License-Identifier: MIT
"""Runs the integration test modules named on the command line and prints
one summary line: 'integration: N passed, N failed, N skipped'."""

import importlib
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(names):
    suite = unittest.TestSuite()
    for name in names:
        suite.addTests(unittest.defaultTestLoader.loadTestsFromModule(
            importlib.import_module(name)))
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors)
    skipped = len(result.skipped)
    # Errors in module fixtures are not tests: count them as failures only.
    ran_ok = result.testsRun - len(result.failures) - skipped - sum(
        1 for t, _ in result.errors if hasattr(t, "_testMethodName"))
    print("integration: %d passed, %d failed, %d skipped"
          % (max(0, ran_ok), failed, skipped))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
