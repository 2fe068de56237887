"""Benchmarks (``make bench``), run as modules from the repository root so that one bench can
reuse another's definitions: ``python -m bench.e2e.run``, ``python -m bench.e2e.scale``,
``python -m bench.allocator.run`` (the last writes bench/RESULTS.md).  gpudra and the test kit
(`gpudra_testkit`) come from the venv that ``make install`` sets up."""
