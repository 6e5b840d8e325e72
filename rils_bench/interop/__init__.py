"""Bridges to other evaluation suites: rils-bench checkpoints in their formats, their results comparable with ours."""
