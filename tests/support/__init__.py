"""Shared test support: paths and ports, subprocesses, fakes, sample data and the pipeline harness.

Test modules import helpers from here, never from another test module or a conftest.
"""
