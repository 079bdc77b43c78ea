"""`make bench`: finsent's scoring and streaming pipeline measured against the baselines a user would pick.

Scripts, not tests: `python -m bench.run --help`. Results go to `bench/results/*.json` and a table in
docs/BENCHMARKS.md. Modules that need torch (the baselines) import it inside functions, so the
torch-free parts (corpus, scoring, end to end) stay usable in the daemon's environment.
"""
