"""Test session set-up: offline by construction, and the stack's known warnings filtered."""

from rils_bench import compat

compat.use_offline_hubs()
compat.silence_known_warnings()
