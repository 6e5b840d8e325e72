"""Transfer evaluation on frozen encoders: few-shot, linear probe, zero-shot, kNN, retrieval.

One file per task, all sharing `features.extract_features` (batched, cached by a hash of every input) and
`datasets` (built-in names or `imagefolder:PATH`). Each task has a keyword-only `run_*` function that checks its
inputs, evaluates, and writes one result record per (checkpoint, task, dataset, setting); `commands.py` adds the
matching `rils-bench` subcommands.
"""
